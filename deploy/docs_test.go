package deploy

import (
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/litefs-dev/litefs/config"
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
