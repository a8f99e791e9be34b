package deploy

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The repository root: the Docker build context.
const repoRoot = ".."

type instruction struct {
	line int
	cmd  string // upper case: FROM, COPY, RUN, ...
	rest string
}

type stage struct {
	name, image, platform string
	workdir               string // the last WORKDIR
	instrs                []instruction
	// installed maps an absolute path in the image to where COPY took it
	// from: "context:<rel>" or "<stage>:<abs>".
	installed map[string]string
}

type copyInstr struct {
	from       string // "" = the build context
	srcs       []string
	dst        string
	line       int
	stageIndex int
}

type dockerfile struct {
	stages []*stage
	copies []copyInstr
}

func (d *dockerfile) stage(name string) *stage {
	for _, s := range d.stages {
		if s.name == name {
			return s
		}
	}
	return nil
}

// parseDockerfile reads the instructions this Dockerfile uses: FROM, ARG,
// WORKDIR, COPY, RUN, CMD, EXPOSE, ENV, ENTRYPOINT, LABEL, USER.
func parseDockerfile(p string) (*dockerfile, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var instrs []instruction
	var cur strings.Builder
	start := 0
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "#") || (t == "" && cur.Len() == 0) {
			continue // comments (and parser directives) and blank lines
		}
		if cur.Len() == 0 {
			start = n
		}
		if strings.HasSuffix(t, `\`) {
			cur.WriteString(strings.TrimSuffix(t, `\`) + " ")
			continue
		}
		cur.WriteString(t)
		cmd, rest, _ := strings.Cut(cur.String(), " ")
		instrs = append(instrs, instruction{line: start, cmd: strings.ToUpper(cmd), rest: strings.TrimSpace(rest)})
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if cur.Len() != 0 {
		return nil, fmt.Errorf("%s: ends inside a continued line", p)
	}

	d := &dockerfile{}
	var s *stage
	for _, in := range instrs {
		where := fmt.Sprintf("%s:%d", p, in.line)
		switch in.cmd {
		case "FROM":
			f := strings.Fields(in.rest)
			s = &stage{installed: map[string]string{}, workdir: "/"}
			if len(f) > 0 && strings.HasPrefix(f[0], "--platform=") {
				s.platform = strings.TrimPrefix(f[0], "--platform=")
				f = f[1:]
			}
			switch {
			case len(f) == 1:
			case len(f) == 3 && strings.EqualFold(f[1], "AS"):
				s.name = f[2]
			default:
				return nil, fmt.Errorf("%s: FROM %s", where, in.rest)
			}
			s.image = f[0]
			d.stages = append(d.stages, s)
			continue
		case "ARG", "WORKDIR", "COPY", "RUN", "CMD", "EXPOSE", "ENV", "ENTRYPOINT", "LABEL", "USER":
		default:
			return nil, fmt.Errorf("%s: instruction %s: teach parseDockerfile about it", where, in.cmd)
		}
		if s == nil {
			if in.cmd == "ARG" {
				continue // global ARG before the first FROM
			}
			return nil, fmt.Errorf("%s: %s before FROM", where, in.cmd)
		}
		s.instrs = append(s.instrs, in)
		switch in.cmd {
		case "WORKDIR":
			s.workdir = path.Join(s.workdir, in.rest)
		case "COPY":
			c, err := parseCopy(in.rest)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			c.line, c.stageIndex = in.line, len(d.stages)-1
			dst := c.dst
			if !path.IsAbs(dst) {
				dst = path.Join(s.workdir, dst)
			}
			for _, src := range c.srcs {
				target := dst
				if strings.HasSuffix(c.dst, "/") || len(c.srcs) > 1 || c.dst == "." {
					target = path.Join(dst, path.Base(src))
				}
				origin := "context:" + src
				if c.from != "" {
					origin = c.from + ":" + src
				}
				s.installed[target] = origin
			}
			d.copies = append(d.copies, c)
		}
	}
	return d, nil
}

func parseCopy(rest string) (copyInstr, error) {
	var c copyInstr
	for strings.HasPrefix(rest, "--") {
		flag, r, _ := strings.Cut(rest, " ")
		rest = strings.TrimSpace(r)
		switch {
		case strings.HasPrefix(flag, "--from="):
			c.from = strings.TrimPrefix(flag, "--from=")
		case strings.HasPrefix(flag, "--chown="), strings.HasPrefix(flag, "--chmod="), flag == "--link":
		default:
			return c, fmt.Errorf("COPY flag %s: teach parseCopy about it", flag)
		}
	}
	var args []string
	if strings.HasPrefix(rest, "[") {
		if err := json.Unmarshal([]byte(rest), &args); err != nil {
			return c, fmt.Errorf("COPY %s: %w", rest, err)
		}
	} else {
		args = strings.Fields(rest)
	}
	if len(args) < 2 {
		return c, fmt.Errorf("COPY %s: want SRC... DST", rest)
	}
	c.srcs, c.dst = args[:len(args)-1], args[len(args)-1]
	return c, nil
}

// makeBuild returns the Makefile's build recipe: output path → go build
// arguments, e.g. "bin/litefs" → [build -o bin/litefs ./cmd/litefs].
func makeBuild(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "build:") {
			in = true
			continue
		}
		if !in {
			continue
		}
		if !strings.HasPrefix(line, "\t") {
			break
		}
		f := strings.Fields(line)
		if len(f) < 5 || f[0] != "$(GO)" || f[1] != "build" {
			t.Fatalf("Makefile build: cannot read %q: want $(GO) build ... -o bin/NAME ./PKG", line)
		}
		i := slices.Index(f, "-o")
		if i < 0 || i+1 >= len(f) {
			t.Fatalf("Makefile build: %q has no -o", line)
		}
		out[f[i+1]] = f[1:]
	}
	if len(out) == 0 {
		t.Fatal("Makefile: no build target")
	}
	return out
}

func readDockerignore(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if os.IsNotExist(err) {
		return nil
	} else if err != nil {
		t.Fatal(err)
	}
	var pats []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.Contains(l, "**") || strings.HasPrefix(l, "!") {
			t.Fatalf(".dockerignore: %q: the matcher in this test handles plain patterns only: extend dockerignored", l)
		}
		pats = append(pats, path.Clean(strings.TrimPrefix(l, "/")))
	}
	return pats
}

// dockerignored reports whether rel (slash-separated, relative to the
// context) is left out of the context: a pattern matches it or one of its
// parent directories.
func dockerignored(pats []string, rel string) bool {
	parts := strings.Split(path.Clean(rel), "/")
	for _, p := range pats {
		for i := 1; i <= len(parts); i++ {
			if ok, _ := path.Match(p, strings.Join(parts[:i], "/")); ok {
				return true
			}
		}
	}
	return false
}

func goModMinor(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("../go.mod has no go directive")
	}
	return string(m[1])
}

func TestDockerfile(t *testing.T) {
	d, err := parseDockerfile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.stages) < 3 {
		t.Fatalf("want stages builder, myapp and litefs, have %d", len(d.stages))
	}
	builder := d.stages[0]
	if builder.name != "builder" {
		t.Fatalf("the first stage must be the builder, is %q", builder.name)
	}
	if last := d.stages[len(d.stages)-1]; last.name != "litefs" {
		t.Errorf("the last stage (the default target) must be litefs, is %q", last.name)
	}
	if d.stage("myapp") == nil {
		t.Error("no myapp stage (docker build --target myapp)")
	}

	// Pinned bases, one Debian release, the go.mod's Go.
	goImage := regexp.MustCompile(`^golang:(\d+\.\d+)(?:\.\d+)?-([a-z]+)(@sha256:[0-9a-f]{64})?$`).FindStringSubmatch(builder.image)
	if goImage == nil {
		t.Fatalf("builder image %s: want golang:MAJOR.MINOR-DEBIAN", builder.image)
	}
	if goImage[1] != goModMinor(t) {
		t.Errorf("builder image %s: go.mod wants Go %s", builder.image, goModMinor(t))
	}
	if builder.platform != "" {
		t.Errorf("builder has --platform=%s: cgo (go-sqlite3) is built natively per platform, without a C cross-compiler", builder.platform)
	}
	for _, s := range d.stages[1:] {
		m := regexp.MustCompile(`^debian:([a-z]+)-slim(@sha256:[0-9a-f]{64})?$`).FindStringSubmatch(s.image)
		if m == nil {
			t.Errorf("stage %s: image %s: want debian:RELEASE-slim, pinned", s.name, s.image)
		} else if m[1] != goImage[2] {
			t.Errorf("stage %s: debian %s, builder %s: the binaries need the builder's glibc", s.name, m[1], goImage[2])
		}
	}
	arg, run := false, ""
	for _, in := range builder.instrs {
		if in.cmd == "ARG" && strings.HasPrefix(in.rest, "TARGETARCH") {
			arg = true
		}
		if in.cmd == "RUN" {
			run += in.rest + "\n"
		}
	}
	if !arg || !strings.Contains(run, "$TARGETARCH") {
		t.Error("builder: ARG TARGETARCH must be declared and checked against go env GOARCH")
	}
	if !regexp.MustCompile(`\bCGO_ENABLED=1\b.*\bmake build\b`).MatchString(run) {
		t.Error("builder: must run CGO_ENABLED=1 ... make build")
	}
	// docs/kubernetes.md: `docker build --build-arg VERSION=v1` makes
	// `litefs version` print v1.
	versionArg := false
	for _, in := range builder.instrs {
		if in.cmd == "ARG" && (in.rest == "VERSION" || strings.HasPrefix(in.rest, "VERSION=")) {
			versionArg = true
		}
	}
	if !versionArg || !regexp.MustCompile(`-X[= ]main\.Version=\$\{?VERSION\b`).MatchString(run) {
		t.Error("builder: ARG VERSION must be declared and passed to the linker as -X main.Version=$VERSION")
	}
	if src, err := os.ReadFile(filepath.Join(repoRoot, "cmd", "litefs", "main.go")); err != nil {
		t.Error(err)
	} else if !regexp.MustCompile(`(?m)^var Version = `).Match(src) {
		t.Error("../cmd/litefs/main.go has no `var Version = ...` for -X main.Version to set")
	}
	litefsStage := d.stage("litefs")
	var pkgs string
	for _, in := range litefsStage.instrs {
		if in.cmd == "RUN" {
			pkgs += in.rest
		}
	}
	for _, p := range []string{"fuse3", "ca-certificates"} {
		if !regexp.MustCompile(`\b` + p + `\b`).MatchString(pkgs) {
			t.Errorf("stage litefs does not install %s", p)
		}
	}
	for stageName, bins := range map[string][]string{"litefs": {"litefs", "restore"}, "myapp": {"myapp"}} {
		for _, b := range bins {
			if _, ok := d.stage(stageName).installed["/usr/local/bin/"+b]; !ok {
				t.Errorf("stage %s has no /usr/local/bin/%s", stageName, b)
			}
		}
	}

	// Every COPY source: in the context and not .dockerignored, or made by
	// the builder's `make build`.
	ignore := readDockerignore(t)
	outputs := makeBuild(t)
	var fromBuilder []string
	for _, c := range d.copies {
		where := fmt.Sprintf("Dockerfile:%d", c.line)
		switch c.from {
		case "":
			for _, src := range c.srcs {
				rel := path.Clean(src)
				if strings.HasPrefix(rel, "../") || path.IsAbs(rel) {
					t.Errorf("%s: %s is outside the context", where, src)
					continue
				}
				if rel == "." {
					continue
				}
				m, _ := filepath.Glob(filepath.Join(repoRoot, filepath.FromSlash(rel)))
				if len(m) == 0 {
					t.Errorf("%s: COPY %s: no such file in the repository", where, src)
				}
				if dockerignored(ignore, rel) {
					t.Errorf("%s: COPY %s, but .dockerignore leaves it out of the context", where, src)
				}
			}
		case builder.name:
			for _, src := range c.srcs {
				rel, ok := strings.CutPrefix(src, builder.workdir+"/")
				if !ok {
					t.Errorf("%s: COPY --from=%s %s: not under the builder's WORKDIR %s", where, c.from, src, builder.workdir)
					continue
				}
				if _, ok := outputs[rel]; !ok {
					t.Errorf("%s: COPY --from=%s %s: `make build` does not make %s (it makes %v)", where, c.from, src, rel, keys(outputs))
				}
				fromBuilder = append(fromBuilder, rel)
			}
		default:
			if d.stage(c.from) == nil {
				t.Errorf("%s: COPY --from=%s: no such stage", where, c.from)
			}
		}
	}

	// What `make build` compiles must be in the context.
	for _, f := range []string{"go.mod", "go.sum", "Makefile"} {
		if dockerignored(ignore, f) {
			t.Errorf(".dockerignore leaves out %s, which the builder needs", f)
		}
	}
	var targets []string
	for _, args := range outputs {
		targets = append(targets, args[len(args)-1])
	}
	list := exec.Command("go", append([]string{"list", "-deps", "-f",
		`{{if .Module}}{{if .Module.Main}}{{.Dir}}|{{join .GoFiles ","}},{{join .CgoFiles ","}},{{join .CFiles ","}},{{join .HFiles ","}},{{join .EmbedFiles ","}}{{end}}{{end}}`},
		targets...)...)
	list.Dir, list.Env = repoRoot, append(os.Environ(), "CGO_ENABLED=1")
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list %v: %v", targets, err)
	}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		dir, files, _ := strings.Cut(line, "|")
		for _, f := range strings.Split(files, ",") {
			if f == "" {
				continue
			}
			rel, err := filepath.Rel(root, filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			if dockerignored(ignore, filepath.ToSlash(rel)) {
				t.Errorf(".dockerignore leaves out %s, which `make build` compiles", rel)
			}
		}
	}

	// Run the Makefile's build commands (output redirected to a temporary
	// directory) and check that the builder's COPY sources come out.
	if testing.Short() {
		t.Log("-short: not building the binaries")
		return
	}
	tmp := t.TempDir()
	for o, args := range outputs {
		args = slices.Clone(args)
		i := slices.Index(args, "-o")
		args[i+1] = filepath.Join(tmp, filepath.FromSlash(o))
		cmd := exec.Command("go", args...)
		cmd.Dir, cmd.Env = repoRoot, append(os.Environ(), "CGO_ENABLED=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	for _, rel := range fromBuilder {
		fi, err := os.Stat(filepath.Join(tmp, filepath.FromSlash(rel)))
		if err != nil {
			t.Errorf("after make build: %v", err)
		} else if fi.Mode()&0o111 == 0 {
			t.Errorf("after make build: %s is not executable", rel)
		}
	}
}

// TestImagesHoldTheCommands checks that each container's image (named after
// a Dockerfile stage) holds the binary its command runs.
func TestImagesHoldTheCommands(t *testing.T) {
	d, err := parseDockerfile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"base", "no-native-sidecar"} {
		b := loadBundle(t, dir)
		spec := b.sts.Spec.Template.Spec
		for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
			repo := c.Image
			if i := strings.LastIndex(repo, "/"); i >= 0 {
				repo = repo[i+1:]
			}
			repo, _, _ = strings.Cut(repo, ":")
			repo, _, _ = strings.Cut(repo, "@")
			s := d.stage(repo)
			if s == nil {
				t.Errorf("%s: %s runs image %s: no Dockerfile stage %s", dir, c.Name, c.Image, repo)
				continue
			}
			bin := c.Command[0]
			if bin == "sh" {
				m := regexp.MustCompile(`(?m)^exec (\S+)`).FindStringSubmatch(c.Command[len(c.Command)-1])
				if m == nil {
					t.Errorf("%s: %s: sh -c script without exec", dir, c.Name)
					continue
				}
				bin = m[1]
			}
			if _, ok := s.installed["/usr/local/bin/"+bin]; !ok {
				t.Errorf("%s: %s runs %s, which stage %s does not install in /usr/local/bin", dir, c.Name, bin, repo)
			}
		}
	}
}

func TestDockerignoreMatcher(t *testing.T) {
	pats := []string{".git", "bin", "*.md", "docs"}
	for rel, want := range map[string]bool{
		".git/config": true, "bin": true, "bin/litefs": true, "README.md": true, "docs/kubernetes.md": true,
		"cmd/litefs/main.go": false, "go.mod": false, "binx": false, "cmd/README.md": false,
	} {
		if got := dockerignored(pats, rel); got != want {
			t.Errorf("dockerignored(%s) = %v, want %v", rel, got, want)
		}
	}
}

func keys(m map[string][]string) []string {
	var k []string
	for s := range m {
		k = append(k, s)
	}
	slices.Sort(k)
	return k
}
