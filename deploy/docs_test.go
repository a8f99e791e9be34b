package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/litefs-dev/litefs/config"
	"sigs.k8s.io/yaml"
)

// TestGuideMatchesManifests keeps docs/kubernetes.md in step with the
// manifests it walks through.
func TestGuideMatchesManifests(t *testing.T) {
	b, err := os.ReadFile("../docs/kubernetes.md")
	if err != nil {
		t.Fatal(err)
	}
	guide := string(b)

	// Every directory the guide applies exists.
	for _, m := range regexp.MustCompile(`kubectl apply -(?:k|f) (deploy/[A-Za-z0-9_./-]*[A-Za-z0-9_/-])`).FindAllStringSubmatch(guide, -1) {
		if _, err := os.Stat(strings.TrimPrefix(m[1], "deploy/")); err != nil {
			t.Errorf("the guide applies %s: %v", m[1], err)
		}
	}

	// The config it shows is the ConfigMap's (comments aside).
	base := loadBundle(t, "base")
	want := parseConfig(t, base)
	blocks := regexp.MustCompile("(?s)```toml\n(.*?)```").FindAllStringSubmatch(guide, -1)
	found := false
	for _, blk := range blocks {
		if !strings.Contains(blk[1], "[fuse]") {
			continue
		}
		found = true
		got, err := config.Parse("docs/kubernetes.md", blk[1])
		if err != nil {
			t.Fatal(err)
		}
		got.Path, want.Path = "", ""
		if !reflect.DeepEqual(got, want) {
			t.Errorf("the guide's litefs.toml differs from the ConfigMap's:\n%+v\n%+v", got, want)
		}
	}
	if !found {
		t.Error("the guide shows no litefs.toml")
	}

	// The wait loop it tells users to copy is the overlay's.
	nn := loadBundle(t, "no-native-sidecar")
	script := find(nn.sts.Spec.Template.Spec.Containers, appName).Command[2]
	for _, line := range strings.Split(strings.TrimSpace(script), "\n") {
		if !strings.Contains(guide, line) {
			t.Errorf("the guide does not show the overlay's line %q", line)
		}
	}

	// And the commands are the containers'.
	for _, cmd := range [][]string{restoreCommand, mountCommand} {
		if !strings.Contains(guide, strings.Join(cmd, " ")) {
			t.Errorf("the guide does not show the command %q", strings.Join(cmd, " "))
		}
	}
}

// TestDocsYAML checks the YAML the docs show but deploy/ does not ship (the
// token Secret and patch, the NetworkPolicy, ...): every block parses
// strictly (no duplicate keys), and every Kubernetes object among them
// decodes strictly into its k8s.io/api type, so a misspelt field fails.
// Kinds from outside k8s.io/api (the Prometheus Operator's PodMonitor) are
// only parsed.
func TestDocsYAML(t *testing.T) {
	foreign := map[string]bool{"monitoring.coreos.com/v1": true}
	for _, doc := range []string{"kubernetes.md", "migrating-from-litestream.md"} {
		b, err := os.ReadFile("../docs/" + doc)
		if err != nil {
			t.Fatal(err)
		}
		blocks := regexp.MustCompile("(?ms)^```yaml\n(.*?)^```").FindAllStringSubmatch(string(b), -1)
		if len(blocks) == 0 {
			t.Errorf("docs/%s: no yaml blocks found: has the fence changed?", doc)
		}
		for i, blk := range blocks {
			name := fmt.Sprintf("docs/%s yaml block %d", doc, i+1)
			j, err := yaml.YAMLToJSONStrict([]byte(blk[1]))
			if err != nil {
				t.Errorf("%s: %v\n%s", name, err, blk[1])
				continue
			}
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if json.Unmarshal(j, &head) != nil || head.Kind == "" || foreign[head.APIVersion] {
				continue // a list (alert rules), a fragment, or not k8s.io/api's
			}
			if _, err := decodeDoc(name, []byte(blk[1])); err != nil {
				t.Errorf("%v", err)
			}
		}
	}
}

// TestMigrationGuide keeps docs/migrating-from-litestream.md in step with
// the code: its litefs.toml parses, and the commands it shows for the pod
// are the manifests'.
func TestMigrationGuide(t *testing.T) {
	b, err := os.ReadFile("../docs/migrating-from-litestream.md")
	if err != nil {
		t.Fatal(err)
	}
	guide := string(b)
	n := 0
	for _, blk := range regexp.MustCompile("(?s)```toml\n(.*?)```").FindAllStringSubmatch(guide, -1) {
		if !strings.Contains(blk[1], "[[dbs]]") {
			continue
		}
		n++
		if _, err := config.Parse("docs/migrating-from-litestream.md", blk[1]); err != nil {
			t.Errorf("its litefs.toml does not parse:\n%v", err)
		}
	}
	if n == 0 {
		t.Error("docs/migrating-from-litestream.md shows no litefs.toml")
	}
	for _, cmd := range [][]string{restoreCommand, mountCommand} {
		if !strings.Contains(guide, strings.Join(cmd, " ")) {
			t.Errorf("docs/migrating-from-litestream.md does not show the command %q", strings.Join(cmd, " "))
		}
	}
	// The tests it cites exist.
	src, err := os.ReadFile("../e2e/interop_test.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile("`(TestInterop[A-Za-z]+)`").FindAllStringSubmatch(guide, -1) {
		if !strings.Contains(string(src), "func "+m[1]+"(") {
			t.Errorf("docs/migrating-from-litestream.md cites %s, which ../e2e/interop_test.go does not define", m[1])
		}
	}
}
