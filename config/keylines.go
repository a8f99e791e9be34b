package config

import (
	"fmt"
	"strings"
)

// keyLines maps each key path written in a TOML text ("fuse.dir",
// "dbs[1].replica.url", "dbs[1]" for the second [[dbs]] header) to the line
// where it is first written. It is only used for messages, on text that
// toml has already parsed: it tracks [table] and [[array]] headers (counting
// array elements per parent), dotted and quoted keys, inline tables and
// arrays of them, and skips strings (multi-line too) and comments.
func keyLines(text string) map[string]int {
	sc := &lineScanner{s: text, line: 1, lines: map[string]int{}, arrs: map[string]int{}}
	sc.run()
	return sc.lines
}

type lineScanner struct {
	s     string
	i     int
	line  int
	lines map[string]int
	arrs  map[string]int // array-of-tables path (parents indexed) → elements so far
}

func (sc *lineScanner) eof() bool { return sc.i >= len(sc.s) }

func (sc *lineScanner) set(path string, line int) {
	if _, ok := sc.lines[path]; !ok {
		sc.lines[path] = line
	}
}

func (sc *lineScanner) run() {
	table := ""
	for !sc.eof() {
		sc.skipSpace()
		if sc.eof() {
			break
		}
		switch c := sc.s[sc.i]; c {
		case '\n':
			sc.i++
			sc.line++
		case '#':
			sc.skipLine()
		case '[':
			line := sc.line
			arr := strings.HasPrefix(sc.s[sc.i:], "[[")
			sc.i++
			if arr {
				sc.i++
			}
			if keys, ok := sc.key(); ok {
				table = sc.header(keys, arr, line)
			}
			sc.skipLine()
		default:
			line := sc.line
			keys, ok := sc.key()
			sc.skipSpace()
			if !ok || sc.eof() || sc.s[sc.i] != '=' {
				sc.skipLine()
				continue
			}
			sc.i++
			sc.value(sc.record(table, keys, line))
			sc.skipLine()
		}
	}
}

// header resolves a [a.b] or [[a.b]] header to an indexed path.
func (sc *lineScanner) header(keys []string, arr bool, line int) string {
	p := ""
	for j, k := range keys {
		p = joinKey(p, k)
		if arr && j == len(keys)-1 {
			sc.set(p, line)
			n := sc.arrs[p]
			sc.arrs[p] = n + 1
			p = fmt.Sprintf("%s[%d]", p, n)
		} else if n, ok := sc.arrs[p]; ok {
			p = fmt.Sprintf("%s[%d]", p, n-1)
		}
		sc.set(p, line)
	}
	return p
}

// record notes a (dotted) key written in table at line; it returns its path.
func (sc *lineScanner) record(table string, keys []string, line int) string {
	p := table
	for _, k := range keys {
		p = joinKey(p, k)
		sc.set(p, line)
	}
	return p
}

func (sc *lineScanner) skipSpace() {
	for !sc.eof() && (sc.s[sc.i] == ' ' || sc.s[sc.i] == '\t' || sc.s[sc.i] == '\r') {
		sc.i++
	}
}

// skipBlank skips spaces, newlines and comments (inside arrays and inline
// tables).
func (sc *lineScanner) skipBlank() {
	for !sc.eof() {
		switch sc.s[sc.i] {
		case ' ', '\t', '\r':
			sc.i++
		case '\n':
			sc.i++
			sc.line++
		case '#':
			for !sc.eof() && sc.s[sc.i] != '\n' {
				sc.i++
			}
		default:
			return
		}
	}
}

// skipLine skips past the next newline.
func (sc *lineScanner) skipLine() {
	for !sc.eof() {
		c := sc.s[sc.i]
		sc.i++
		if c == '\n' {
			sc.line++
			return
		}
	}
}

func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// key reads a dotted key.
func (sc *lineScanner) key() ([]string, bool) {
	var keys []string
	for {
		sc.skipSpace()
		if sc.eof() {
			return nil, false
		}
		var k string
		switch sc.s[sc.i] {
		case '"':
			k = sc.str('"', true)
		case '\'':
			k = sc.str('\'', false)
		default:
			start := sc.i
			for !sc.eof() && isBare(sc.s[sc.i]) {
				sc.i++
			}
			if sc.i == start {
				return nil, false
			}
			k = sc.s[start:sc.i]
		}
		keys = append(keys, k)
		sc.skipSpace()
		if sc.eof() || sc.s[sc.i] != '.' {
			return keys, true
		}
		sc.i++
	}
}

// str reads a one-line string starting at its quote; with escapes, \" and
// \\ are unescaped (enough for key names).
func (sc *lineScanner) str(q byte, escapes bool) string {
	sc.i++
	var b strings.Builder
	for !sc.eof() && sc.s[sc.i] != '\n' {
		c := sc.s[sc.i]
		sc.i++
		if c == q {
			break
		}
		if escapes && c == '\\' && !sc.eof() && sc.s[sc.i] != '\n' {
			c = sc.s[sc.i]
			sc.i++
		}
		b.WriteByte(c)
	}
	return b.String()
}

// multi skips a multi-line string starting at its opening delimiter.
func (sc *lineScanner) multi(q byte, escapes bool) {
	delim := strings.Repeat(string(q), 3)
	sc.i += 3
	for !sc.eof() {
		switch c := sc.s[sc.i]; {
		case escapes && c == '\\':
			sc.i++
			if !sc.eof() {
				if sc.s[sc.i] == '\n' {
					sc.line++
				}
				sc.i++
			}
		case strings.HasPrefix(sc.s[sc.i:], delim):
			sc.i += 3
			for n := 0; n < 2 && !sc.eof() && sc.s[sc.i] == q; n++ {
				sc.i++
			}
			return
		default:
			if c == '\n' {
				sc.line++
			}
			sc.i++
		}
	}
}

// value skips a value, recording the keys of inline tables under path.
func (sc *lineScanner) value(path string) {
	sc.skipSpace()
	if sc.eof() {
		return
	}
	rest := sc.s[sc.i:]
	switch {
	case strings.HasPrefix(rest, `"""`):
		sc.multi('"', true)
	case strings.HasPrefix(rest, `'''`):
		sc.multi('\'', false)
	case rest[0] == '"':
		sc.str('"', true)
	case rest[0] == '\'':
		sc.str('\'', false)
	case rest[0] == '[':
		sc.i++
		for n := 0; ; n++ {
			sc.skipBlank()
			if sc.eof() {
				return
			}
			if sc.s[sc.i] == ']' {
				sc.i++
				return
			}
			elem := fmt.Sprintf("%s[%d]", path, n)
			if sc.s[sc.i] == '{' {
				sc.set(elem, sc.line)
			}
			sc.value(elem)
			sc.skipBlank()
			if sc.eof() || sc.s[sc.i] != ',' {
				if !sc.eof() && sc.s[sc.i] == ']' {
					sc.i++
				}
				return
			}
			sc.i++
		}
	case rest[0] == '{':
		sc.i++
		for {
			sc.skipBlank()
			if sc.eof() {
				return
			}
			if sc.s[sc.i] == '}' {
				sc.i++
				return
			}
			line := sc.line
			keys, ok := sc.key()
			sc.skipSpace()
			if !ok || sc.eof() || sc.s[sc.i] != '=' {
				return
			}
			sc.i++
			sc.value(sc.record(path, keys, line))
			sc.skipBlank()
			if sc.eof() || sc.s[sc.i] != ',' {
				if !sc.eof() && sc.s[sc.i] == '}' {
					sc.i++
				}
				return
			}
			sc.i++
		}
	default:
		for !sc.eof() && !strings.ContainsRune(",]}#\n", rune(sc.s[sc.i])) {
			sc.i++
		}
	}
}
