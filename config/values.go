package config

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written as "1s", "24h".
type Duration time.Duration

func (d Duration) String() string { return time.Duration(d).String() }

func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

func (d *Duration) UnmarshalText(b []byte) error {
	s := strings.TrimSpace(string(b))
	v, err := time.ParseDuration(s)
	if err != nil {
		if daysRe.MatchString(s) {
			return fmt.Errorf("bad duration %q; there is no day unit: write hours, like \"72h\"", b)
		}
		return fmt.Errorf("bad duration %q; write it like \"1s\", \"500ms\" or \"24h\"", b)
	}
	if v < 0 {
		return fmt.Errorf("negative duration %q; use a positive one like \"30s\"", b)
	}
	*d = Duration(v)
	return nil
}

var daysRe = regexp.MustCompile(`(?i)^[0-9.]+\s*(d|days?|w|weeks?|y|years?)$`)

// Size is a byte count written as "1GiB", "512MiB", "100MB" or a plain number.
type Size int64

var sizeRe = regexp.MustCompile(`^\s*([0-9]+)\s*([A-Za-z]*)\s*$`)

var sizeUnits = map[string]int64{"": 1, "b": 1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}

func (s Size) String() string {
	for _, u := range []struct {
		name string
		n    int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if s != 0 && int64(s)%u.n == 0 {
			return strconv.FormatInt(int64(s)/u.n, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s *Size) UnmarshalText(b []byte) error {
	m := sizeRe.FindStringSubmatch(string(b))
	if m == nil {
		return fmt.Errorf("bad size %q; write it like \"1GiB\", \"512MiB\" or a number of bytes", b)
	}
	mult, ok := sizeUnits[strings.ToLower(m[2])]
	if !ok {
		return fmt.Errorf("bad size %q: unknown unit %q; use B, KiB, MiB, GiB, TiB (or KB, MB, GB, TB)", b, m[2])
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || n > (1<<63-1)/mult {
		return fmt.Errorf("bad size %q: too large; write it like \"1GiB\"", b)
	}
	*s = Size(n * mult)
	return nil
}

var envRe = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// ExpandEnv replaces ${VAR} with the variable's value and ${VAR:-default}
// with the value, or default when VAR is unset or empty. ${VAR} with VAR
// unset is an error naming it. Everything else (a bare $, $VAR, an unclosed
// ${) is left alone so that secrets containing $ survive.
func ExpandEnv(s string) (string, error) {
	var missing []string
	out := envRe.ReplaceAllStringFunc(s, func(m string) string {
		sm := envRe.FindStringSubmatch(m)
		v, ok := os.LookupEnv(sm[1])
		if sm[2] != "" {
			if v == "" {
				return sm[3]
			}
			return v
		}
		if !ok {
			missing = append(missing, sm[1])
		}
		return v
	})
	switch len(missing) {
	case 0:
		return out, nil
	case 1:
		return "", fmt.Errorf("environment variable %s is not set; set it, or write ${%s:-default} to give a default", missing[0], missing[0])
	default:
		return "", fmt.Errorf("environment variables %s are not set; set them, or write ${NAME:-default} to give a default", strings.Join(missing, ", "))
	}
}
