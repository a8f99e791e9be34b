package config_test

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/litefs-dev/litefs/config"
)

// FuzzParse: Parse never panics; every problem is one line
// naming the file; a config that parses re-validates idempotently, and
// written back out as TOML parses to the same config.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "config", "*.toml"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds in testdata/config: %v", err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add(goodConfig)
	f.Add("")
	f.Add("dbs = [{path = \"/m/db\", replica = {url = \"file:///r\"}}]\nfuse.dir = \"/m\"\ndata.dir = \"/d\"\n")

	f.Fuzz(func(t *testing.T, text string) {
		c, err := config.Parse("f.toml", text)
		if err != nil {
			lines := strings.Count(text, "\n") + 1
			for _, p := range strings.Split(err.Error(), "\n") {
				rest, ok := strings.CutPrefix(p, "f.toml:")
				num, _, _ := strings.Cut(rest, ":")
				if n, err := strconv.Atoi(num); !ok || err != nil || n < 1 || n > lines {
					if !strings.Contains(p, "more problems not shown") {
						t.Fatalf("problem without a file:line of the text (%d lines): %q", lines, p)
					}
				}
			}
			return
		}
		before := encode(t, c)
		if err := c.Validate(); err != nil {
			t.Fatalf("parsed config does not re-validate: %v\nconfig:\n%s", err, text)
		}
		if after := encode(t, c); after != before {
			t.Fatalf("Validate changed the config:\n%s\nto:\n%s", before, after)
		}
		if strings.Contains(before, "${") {
			return // an expanded value that spells ${VAR} would be expanded again
		}
		c2, err := config.Parse("f.toml", before)
		if err != nil {
			t.Fatalf("the config written back does not parse: %v\nwritten:\n%s\nfrom:\n%s", err, before, text)
		}
		if !reflect.DeepEqual(c, c2) {
			t.Fatalf("round trip differs:\n%+v\n%+v\nwritten:\n%s", c, c2, before)
		}
	})
}

func encode(t *testing.T, c *config.Config) string {
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(c); err != nil {
		t.Fatalf("encode: %v", err)
	}
	return b.String()
}
