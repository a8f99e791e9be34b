package config

import (
	"fmt"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"
)

// checker collects every problem of a config, each with its key path and
// line, and decodes the TOML into the schema strictly.
type checker struct {
	file    string
	text    string          // the config text
	hasText bool            // false when validating a Config built in code: no lines
	lines   map[string]int  // key path → line, computed from text on first use
	defined map[string]bool // key paths written in the text (nil: unknown)
	seen    map[string]bool // one problem per key path
	probs   []problem
}

type problem struct {
	line     int
	key, msg string
}

// add reports a problem with a key, at the line where the key (or, when it
// is not written, the nearest table around it) is written.
func (ck *checker) add(key, format string, args ...any) {
	ck.addLine(ck.lineOf(key), key, fmt.Sprintf(format, args...))
}

func (ck *checker) addLine(line int, key, msg string) {
	if key != "" {
		for k := key; k != ""; k = parentKey(k) {
			if ck.seen[k] {
				return // one problem per key, none under a key that has one
			}
		}
		if ck.seen == nil {
			ck.seen = map[string]bool{}
		}
		ck.seen[key] = true
	}
	ck.probs = append(ck.probs, problem{line, key, msg})
}

func (ck *checker) err() error {
	if len(ck.probs) == 0 {
		return nil
	}
	sort.SliceStable(ck.probs, func(i, j int) bool { return ck.probs[i].line < ck.probs[j].line })
	e := &Error{}
	for i, p := range ck.probs {
		if i == maxProblems {
			e.Problems = append(e.Problems, fmt.Sprintf("%s: %d more problems not shown; fix the ones above first", ck.file, len(ck.probs)-i))
			break
		}
		var b strings.Builder
		b.WriteString(ck.file)
		if p.line > 0 {
			fmt.Fprintf(&b, ":%d", p.line)
		}
		b.WriteString(": ")
		if p.key != "" {
			b.WriteString(p.key + ": ")
		}
		b.WriteString(p.msg)
		e.Problems = append(e.Problems, oneLine(b.String()))
	}
	return e
}

// oneLine keeps a message on one line whatever values it quotes.
func oneLine(s string) string {
	return strings.NewReplacer("\r\n", `\n`, "\n", `\n`, "\r", `\r`).Replace(s)
}

// lineOf is the line where key, or else its nearest parent, is written:
// 1 when none is, 0 when there is no text.
func (ck *checker) lineOf(key string) int {
	if !ck.hasText {
		return 0
	}
	if ck.lines == nil {
		ck.lines = keyLines(ck.text)
	}
	for k := key; k != ""; k = parentKey(k) {
		if l, ok := ck.lines[k]; ok {
			return l
		}
	}
	return 1
}

func parentKey(k string) string {
	if i := strings.LastIndexAny(k, ".["); i >= 0 {
		return k[:i]
	}
	return ""
}

// missing reports a required key that is absent, or present but empty.
func (ck *checker) missing(key, fix string) {
	if ck.defined[key] {
		ck.add(key, "is empty; %s", fix)
	} else {
		ck.add(key, "missing required key; %s", fix)
	}
}

// absDir checks a required absolute directory and cleans it.
func (ck *checker) absDir(key string, dir *string, what string) bool {
	switch {
	case *dir == "":
		ck.missing(key, "set it to "+what)
		return false
	case !filepath.IsAbs(*dir):
		ck.add(key, "%q is a relative path; write an absolute path", *dir)
		return false
	}
	*dir = filepath.Clean(*dir)
	return true
}

// dbPath checks a database path (and cleans it).
func (ck *checker) dbPath(key string, p *string, c *Config, fuseOK, dataOK bool) bool {
	ex := "/var/lib/myapp/db"
	if fuseOK {
		ex = filepath.Join(c.FUSE.Dir, "db")
	}
	switch {
	case *p == "":
		ck.missing(key, fmt.Sprintf("set it to the database file the app opens, like path = %q", ex))
		return false
	case !filepath.IsAbs(*p):
		ck.add(key, "%q is a relative path; write the absolute path the app opens, like %q", *p, ex)
		return false
	}
	*p = filepath.Clean(*p)
	for _, suf := range []string{"-wal", "-shm", "-journal"} {
		if strings.HasSuffix(*p, suf) {
			ck.add(key, "%s names a SQLite %s file; name the database file itself", *p, suf[1:])
			return false
		}
	}
	if !fuseOK {
		return true
	}
	if *p == c.FUSE.Dir {
		ck.add(key, "%s is fuse.dir itself; name the database file inside it, like %q", *p, ex)
		return false
	}
	if _, err := c.RelPath(*p); err != nil {
		if isInside(*p, c.FUSE.Dir) {
			ck.add(key, "%s is inside the hidden .litefs directory; choose another path under fuse.dir", *p)
		} else if rel, err := filepath.Rel(c.Data.Dir, *p); dataOK && err == nil && isInside(*p, c.Data.Dir) {
			ck.add(key, "%s is under data.dir %s; use the path the app opens under the mount: %q", *p, c.Data.Dir, filepath.Join(c.FUSE.Dir, rel))
		} else {
			ck.add(key, "%s is not inside fuse.dir %s; use the path the app opens under the mount, like %q", *p, c.FUSE.Dir, ex)
		}
		return false
	}
	return true
}

// positive reports a duration that is negative, or zero unless zeroOK.
func (ck *checker) positive(key string, d Duration, zeroOK bool) {
	if d < 0 || (d == 0 && !zeroOK) {
		ck.add(key, "must be more than 0s; %s", zeroFix(key))
	}
}

// zeroFix says what to do about an explicit zero.
func zeroFix(key string) string {
	switch schemaKey(key) {
	case "shutdown-timeout":
		return "omit it for the default 30s"
	case "http.readiness-max-lag":
		return "omit it, and lag never makes /readyz unready"
	case "dbs.replica.lease-ttl":
		return "omit it for the default 30s"
	case "dbs.replica.snapshot-interval":
		return "omit it for the default 24h"
	case "dbs.replica.retention":
		return "omit it for the default 72h"
	}
	return "use a positive duration"
}

// schemaKey drops array indices: "dbs[1].replica.url" → "dbs.replica.url".
func schemaKey(key string) string {
	var b strings.Builder
	skip := false
	for _, r := range key {
		switch {
		case r == '[':
			skip = true
		case r == ']':
			skip = false
		case !skip:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Keys where an explicit zero is nonsense (checked before defaults hide it).
var nonZero = map[string]bool{
	"shutdown-timeout":              true,
	"http.readiness-max-lag":        true,
	"dbs.replica.lease-ttl":         true,
	"dbs.replica.snapshot-interval": true,
	"dbs.replica.retention":         true,
	"dbs.replica.staging-max-bytes": true,
}

var (
	durationType = reflect.TypeFor[Duration]()
	sizeType     = reflect.TypeFor[Size]()
)

func joinKey(a, k string) string {
	if a == "" {
		return k
	}
	return a + "." + k
}

// decodeStruct decodes a TOML table into the struct rv; path is the key path
// with indices, schema the same without.
func (ck *checker) decodeStruct(m map[string]any, rv reflect.Value, path, schema string) {
	fields := structFields(rv.Type())
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p := joinKey(path, k)
		ck.defined[p] = true
		i, ok := fields[k]
		if !ok {
			ck.add(p, "unknown key; %s", suggest(schema, k))
			continue
		}
		ck.decodeValue(m[k], rv.Field(i), p, joinKey(schema, k))
	}
}

func (ck *checker) decodeValue(v any, fv reflect.Value, path, schema string) {
	t := fv.Type()
	if t.Kind() == reflect.Pointer && t.Elem() != reflect.TypeFor[bool]() && t.Elem() != durationType {
		return // not in the schema
	}
	switch {
	case t == durationType || t == reflect.PointerTo(durationType):
		s, ok := v.(string)
		if !ok {
			ck.add(path, "want a duration in quotes, like \"1s\", got %s; write it like \"1s\", \"500ms\" or \"24h\"", tomlType(v))
			return
		}
		if s, ok = ck.expand(path, s); !ok {
			return
		}
		var d Duration
		if err := d.UnmarshalText([]byte(s)); err != nil {
			ck.add(path, "%v", err)
			return
		}
		if d == 0 && nonZero[schema] {
			ck.add(path, "must be more than 0s; %s", zeroFix(schema))
			return
		}
		if t.Kind() == reflect.Pointer {
			fv.Set(reflect.ValueOf(&d))
		} else {
			fv.Set(reflect.ValueOf(d))
		}
	case t == sizeType:
		var sz Size
		switch x := v.(type) {
		case int64:
			if x < 0 {
				ck.add(path, "negative size %d; write it like \"1GiB\"", x)
				return
			}
			sz = Size(x)
		case string:
			s, ok := ck.expand(path, x)
			if !ok {
				return
			}
			if err := sz.UnmarshalText([]byte(s)); err != nil {
				ck.add(path, "%v", err)
				return
			}
		default:
			ck.add(path, "want a size like \"1GiB\" or a number of bytes, got %s; write it like \"1GiB\"", tomlType(v))
			return
		}
		if sz < MinStagingMaxBytes && nonZero[schema] {
			ck.add(path, "%d bytes is below the minimum of 1MiB; use at least \"1MiB\" (the default is \"1GiB\")", int64(sz))
			return
		}
		fv.Set(reflect.ValueOf(sz))
	case t.Kind() == reflect.String:
		s, ok := v.(string)
		if !ok {
			ck.add(path, "want a string, got %s; put the value in double quotes", tomlType(v))
			return
		}
		if s, ok = ck.expand(path, s); ok {
			fv.SetString(s)
		}
	case t.Kind() == reflect.Bool || t == reflect.TypeFor[*bool]():
		b, ok := v.(bool)
		if !ok {
			fix := "write true or false"
			if _, isStr := v.(string); isStr {
				fix = "write true or false, without quotes"
			}
			ck.add(path, "want true or false, got %s; %s", tomlType(v), fix)
			return
		}
		if t.Kind() == reflect.Pointer {
			fv.Set(reflect.ValueOf(&b))
		} else {
			fv.SetBool(b)
		}
	case t.Kind() == reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			ck.add(path, "want a table, got %s; write [%s] and its keys on the lines below it", tomlType(v), schema)
			return
		}
		ck.decodeStruct(m, fv, path, schema)
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct:
		var elems []any
		switch x := v.(type) {
		case []map[string]any:
			for _, e := range x {
				elems = append(elems, e)
			}
		case []any:
			elems = x
		default:
			ck.add(path, "want an array of tables, got %s; write each one as [[%s]], with two brackets", tomlType(v), schema)
			return
		}
		s := reflect.MakeSlice(t, len(elems), len(elems))
		for i, e := range elems {
			p := fmt.Sprintf("%s[%d]", path, i)
			m, ok := e.(map[string]any)
			if !ok {
				ck.add(p, "want a table, got %s; write each one as [[%s]], with two brackets", tomlType(e), schema)
				continue
			}
			ck.defined[p] = true
			ck.decodeStruct(m, s.Index(i), p, schema)
		}
		fv.Set(s)
	}
}

// expand expands environment variables in a string value.
func (ck *checker) expand(path, s string) (string, bool) {
	out, err := ExpandEnv(s)
	if err != nil {
		ck.add(path, "%v", err)
		return "", false
	}
	return out, true
}

func tomlType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case map[string]any:
		return "a table"
	case []any, []map[string]any:
		return "an array"
	case time.Time:
		return "a date"
	}
	return fmt.Sprintf("a %T", v)
}

// structFields maps toml key → field index.
func structFields(t reflect.Type) map[string]int {
	m := map[string]int{}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		if name != "" && name != "-" {
			m[name] = i
		}
	}
	return m
}

// schemaTables maps each table of the schema ("" for the top level, "dbs",
// "dbs.replica") to its keys, in struct order.
var schemaTables = sync.OnceValue(func() map[string][]string {
	tables := map[string][]string{}
	var walk func(t reflect.Type, schema string)
	walk = func(t reflect.Type, schema string) {
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if name == "" || name == "-" {
				continue
			}
			tables[schema] = append(tables[schema], name)
			ft := f.Type
			if ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct && ft != durationType {
				walk(ft, joinKey(schema, name))
			}
		}
	}
	walk(reflect.TypeFor[Config](), "")
	return tables
})

func tableName(schema string) string {
	switch schema {
	case "":
		return "the top level"
	case "dbs":
		return "[[dbs]]"
	}
	return "[" + schema + "]"
}

func normKey(k string) string {
	return strings.NewReplacer("_", "-", " ", "-").Replace(strings.ToLower(k))
}

// suggest says what to do about an unknown key k in the table schema.
func suggest(schema, k string) string {
	tables := schemaTables()
	here := tables[schema]
	n := normKey(k)
	for _, known := range here {
		if normKey(known) == n {
			return fmt.Sprintf("did you mean %s?", known)
		}
	}
	// A known key written in the wrong table.
	var where []string
	var name string
	for t, keys := range tables {
		for _, known := range keys {
			if t != schema && normKey(known) == n {
				where = append(where, tableName(t))
				name = known
			}
		}
	}
	if len(where) > 0 {
		sort.Strings(where)
		return fmt.Sprintf("%s belongs in %s", name, strings.Join(where, " or "))
	}
	best, bestD := "", 1<<30
	for _, known := range here {
		if d := editDistance(n, normKey(known)); d < bestD {
			best, bestD = known, d
		}
	}
	if limit := min(3, len(n)/4+1); bestD <= limit && bestD < len(n) {
		return fmt.Sprintf("did you mean %s?", best)
	}
	return fmt.Sprintf("%s takes %s", tableName(schema), strings.Join(here, ", "))
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and adjacent transpositions ("dri" → "dir") cost 1.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
