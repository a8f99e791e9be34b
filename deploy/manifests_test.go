package deploy

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/config"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// What the guide (docs/kubernetes.md) and docs/configuration.md fix.
const (
	configFile    = "/etc/litefs.toml" // the default path (docs/configuration.md)
	configKey     = "litefs.toml"      // the ConfigMap key, mounted with subPath
	litefsName    = "litefs"           // the sidecar container
	restoreName   = "restore"          // the init container
	appName       = "myapp"            // the app container
	fuseVolume    = "fuse"             // emptyDir: the FUSE dir
	dataVolume    = "data"             // volumeClaimTemplate: the data dir
	configVolume  = "config"
	metricsPort   = 9090
	appPort       = 8080
	appHealthPath = "/healthz" // myapp's probe endpoint: a read, never a visit
	pvcSize       = "100Mi"
)

var (
	restoreCommand = []string{"restore", "-config", configFile, "-if-db-not-exists", "-if-replica-exists", "-v", "/var/lib/myapp/db"}
	mountCommand   = []string{"litefs", "mount", "-config", configFile}
)

func TestNativeSidecar(t *testing.T) {
	b := loadBundle(t, "base")
	checkBundle(t, b)
	spec := b.sts.Spec.Template.Spec
	if len(spec.InitContainers) != 2 || spec.InitContainers[0].Name != restoreName || spec.InitContainers[1].Name != litefsName {
		t.Fatalf("initContainers: want [%s %s] (restore must finish before the sidecar mounts), have %v", restoreName, litefsName, names(spec.InitContainers))
	}
	side := spec.InitContainers[1]
	if side.RestartPolicy == nil || *side.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("initContainer %s: restartPolicy must be Always (a native sidecar)", litefsName)
	}
	if r := spec.InitContainers[0].RestartPolicy; r != nil {
		t.Errorf("initContainer %s: restartPolicy %s: it must run to completion, not as a sidecar", restoreName, *r)
	}
	if len(spec.Containers) != 1 || spec.Containers[0].Name != appName {
		t.Errorf("containers: want [%s], have %v", appName, names(spec.Containers))
	}
	if !slices.Equal(spec.Containers[0].Command, []string{"myapp", "-addr", ":" + strconv.Itoa(appPort), "-db", "/var/lib/myapp/db"}) {
		t.Errorf("container %s: command %q", appName, spec.Containers[0].Command)
	}
}

func TestNoNativeSidecar(t *testing.T) {
	b := loadBundle(t, "no-native-sidecar")
	checkBundle(t, b)
	spec := b.sts.Spec.Template.Spec
	if len(spec.InitContainers) != 1 || spec.InitContainers[0].Name != restoreName {
		t.Fatalf("initContainers: want [%s], have %v", restoreName, names(spec.InitContainers))
	}
	if got := names(spec.Containers); !slices.Contains(got, litefsName) || !slices.Contains(got, appName) || len(got) != 2 {
		t.Fatalf("containers: want %s and %s, have %v", litefsName, appName, got)
	}
	side := find(spec.Containers, litefsName)
	if side.RestartPolicy != nil {
		t.Errorf("container %s: a regular container takes no restartPolicy", litefsName)
	}
	if side.Lifecycle == nil || side.Lifecycle.PreStop == nil {
		t.Errorf("container %s: needs a preStop hook so that %s stops first", litefsName, appName)
	}

	// The app must wait for the FUSE mount: started at the same time, it
	// would otherwise create its database on the bare emptyDir.
	app := find(spec.Containers, appName)
	cfg := parseConfig(t, b)
	if len(app.Command) != 3 || app.Command[0] != "sh" || app.Command[1] != "-c" {
		t.Fatalf("container %s: want sh -c SCRIPT, have %q", appName, app.Command)
	}
	script := app.Command[2]
	wait := regexp.MustCompile(`(?m)^until grep -qs ' (\S+) fuse\.(\S+) ' /proc/self/mounts; do sleep [0-9.]+; done$`).FindStringSubmatch(script)
	if wait == nil {
		t.Fatalf("container %s: the script does not wait for the mount with the expected loop:\n%s", appName, script)
	}
	if wait[1] != cfg.FUSE.Dir {
		t.Errorf("container %s waits for a mount on %s, fuse.dir is %s", appName, wait[1], cfg.FUSE.Dir)
	}
	// /proc/mounts shows a go-fuse mount as fuse.<MountOptions.Name>.
	src, err := os.ReadFile("../fs/fs.go")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`\bName:\s*"` + regexp.QuoteMeta(wait[2]) + `"`).Match(src) {
		t.Errorf("container %s waits for fstype fuse.%s, but ../fs/fs.go mounts with another Name: it would wait forever", appName, wait[2])
	}
	if !strings.Contains(script, "\nexec myapp -addr :"+strconv.Itoa(appPort)+" -db /var/lib/myapp/db") {
		t.Errorf("container %s: the script must exec myapp -addr :%d -db /var/lib/myapp/db:\n%s", appName, appPort, script)
	}
	if app.StartupProbe == nil {
		t.Errorf("container %s: needs a startupProbe: it waits for the mount before it listens", appName)
	}
}

// checkBundle asserts what both variants share.
func checkBundle(t *testing.T, b *bundle) {
	cfg := parseConfig(t, b)
	sts := b.sts
	spec := sts.Spec.Template.Spec
	all := append(slices.Clone(spec.InitContainers), spec.Containers...)

	if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 1 {
		t.Errorf("replicas must be 1: one writer per replica path")
	}
	if sts.Spec.ServiceName != b.svc.Name {
		t.Errorf("serviceName %q, the Service is %q", sts.Spec.ServiceName, b.svc.Name)
	}
	if sts.Spec.Selector == nil || !subset(sts.Spec.Selector.MatchLabels, sts.Spec.Template.Labels) || len(sts.Spec.Selector.MatchLabels) == 0 {
		t.Errorf("selector %v does not select the template's labels %v", sts.Spec.Selector, sts.Spec.Template.Labels)
	}

	// The restore init container.
	restore := find(all, restoreName)
	if restore == nil || len(spec.InitContainers) == 0 || spec.InitContainers[0].Name != restoreName {
		t.Fatalf("the first init container must be %s", restoreName)
	}
	if !slices.Equal(restore.Command, restoreCommand) {
		t.Errorf("%s: command %q, want %q", restoreName, restore.Command, restoreCommand)
	}
	if len(restore.Args) != 0 {
		t.Errorf("%s: args %q: everything belongs in command", restoreName, restore.Args)
	}
	dbArg := restoreCommand[len(restoreCommand)-1]
	if _, err := cfg.FindDB(dbArg); err != nil {
		t.Errorf("%s: %v", restoreName, err)
	}
	if p, err := cfg.DataPath(dbArg); err != nil || !strings.HasPrefix(p, mountPath(t, restore, dataVolume)+"/") {
		t.Errorf("%s writes %s (err %v), which is not on the %s volume at %s", restoreName, p, err, dataVolume, mountPath(t, restore, dataVolume))
	}

	// The litefs sidecar.
	side := find(all, litefsName)
	if side == nil {
		t.Fatalf("no %s container", litefsName)
	}
	if !slices.Equal(side.Command, mountCommand) || len(side.Args) != 0 {
		t.Errorf("%s: command %q args %q, want %q", litefsName, side.Command, side.Args, mountCommand)
	}
	if side.SecurityContext == nil || side.SecurityContext.Privileged == nil || !*side.SecurityContext.Privileged {
		t.Errorf("%s must be privileged: /dev/fuse, mount(2) and Bidirectional propagation", litefsName)
	}
	_, portStr, err := net.SplitHostPort(cfg.HTTP.Addr)
	if err != nil || portStr != strconv.Itoa(metricsPort) {
		t.Errorf("http.addr %q: want port %d (the manifests' metrics port)", cfg.HTTP.Addr, metricsPort)
	}
	checkPort(t, side, "metrics", metricsPort)
	checkHTTPProbe(t, side, "startupProbe", side.StartupProbe, "/readyz", "metrics")
	checkHTTPProbe(t, side, "readinessProbe", side.ReadinessProbe, "/readyz", "metrics")
	checkHTTPProbe(t, side, "livenessProbe", side.LivenessProbe, "/healthz", "metrics")
	if p := side.StartupProbe; p != nil && time.Duration(p.PeriodSeconds*p.FailureThreshold)*time.Second < 2*time.Duration(config.DefaultLeaseTTL) {
		t.Errorf("%s: the startupProbe gives up after %ds: start-up may wait out a dead writer's lease (%v) and S3", litefsName, p.PeriodSeconds*p.FailureThreshold, config.DefaultLeaseTTL)
	}
	if mountPath(t, side, fuseVolume) != cfg.FUSE.Dir {
		t.Errorf("%s mounts %s at %s, fuse.dir is %s", litefsName, fuseVolume, mountPath(t, side, fuseVolume), cfg.FUSE.Dir)
	}
	if mountPath(t, side, dataVolume) != cfg.Data.Dir {
		t.Errorf("%s mounts %s at %s, data.dir is %s", litefsName, dataVolume, mountPath(t, side, dataVolume), cfg.Data.Dir)
	}
	if mountPath(t, restore, dataVolume) != cfg.Data.Dir {
		t.Errorf("%s mounts %s at %s, data.dir is %s", restoreName, dataVolume, mountPath(t, restore, dataVolume), cfg.Data.Dir)
	}
	checkPropagation(t, side, fuseVolume, corev1.MountPropagationBidirectional)

	// The app.
	app := find(spec.Containers, appName)
	if app == nil {
		t.Fatalf("no %s container", appName)
	}
	checkPort(t, app, "http", appPort)
	checkPropagation(t, app, fuseVolume, corev1.MountPropagationHostToContainer)
	if mountPath(t, app, fuseVolume) != cfg.FUSE.Dir {
		t.Errorf("%s mounts %s at %s, fuse.dir is %s", appName, fuseVolume, mountPath(t, app, fuseVolume), cfg.FUSE.Dir)
	}
	if !strings.Contains(strings.Join(app.Command, " "), "-db "+cfg.DBs[0].Path) {
		t.Errorf("%s: command %q does not open %s", appName, app.Command, cfg.DBs[0].Path)
	}
	// Every GET / increments the counter, so the probes GET /healthz, which
	// reads the database without a write.
	checkHTTPProbe(t, app, "readinessProbe", app.ReadinessProbe, appHealthPath, "http")
	checkHTTPProbe(t, app, "livenessProbe", app.LivenessProbe, appHealthPath, "http")
	if p := app.StartupProbe; p != nil {
		checkHTTPProbe(t, app, "startupProbe", p, appHealthPath, "http")
	}
	checkAppServesHealth(t)

	// Privilege and propagation: only litefs is privileged, and the API
	// server rejects Bidirectional on an unprivileged container.
	for _, c := range all {
		priv := c.SecurityContext != nil && c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged
		if priv && c.Name != litefsName {
			t.Errorf("%s is privileged: only %s needs to be", c.Name, litefsName)
		}
		for _, m := range c.VolumeMounts {
			if m.MountPropagation != nil && *m.MountPropagation == corev1.MountPropagationBidirectional && !priv {
				t.Errorf("%s: Bidirectional propagation on %s needs a privileged container", c.Name, m.Name)
			}
		}
		// The same config, at the path the commands pass with -config.
		if c.Name == litefsName || c.Name == restoreName {
			checkConfigMount(t, b, &c)
			checkSecretEnv(t, b, &c)
			if c.Image != side.Image {
				t.Errorf("%s runs image %s, %s runs %s: they share one image", c.Name, c.Image, litefsName, side.Image)
			}
		}
	}

	checkVolumes(t, b, all)
	checkService(t, b, all)
	checkGrace(t, b, cfg, side)
}

// parseConfig parses the ConfigMap's litefs.toml with the daemon's own
// parser (unknown keys, bad durations, paths and URLs are errors), with the
// environment the containers get from the Secret.
func parseConfig(t *testing.T, b *bundle) *config.Config {
	t.Helper()
	text, ok := b.cm.Data[configKey]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %s", b.cm.Name, configKey)
	}
	env := secretData(b.secret)
	for _, m := range regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`).FindAllStringSubmatch(text, -1) {
		if _, ok := env[m[1]]; !ok {
			t.Errorf("%s uses ${%s}, which the Secret %s does not set: it would expand to \"\"", configKey, m[1], b.secret.Name)
		}
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	cfg, err := config.Parse("ConfigMap "+b.cm.Name+" "+configKey, text)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.DBs) != 1 || cfg.DBs[0].Path != "/var/lib/myapp/db" {
		t.Fatalf("%s: want the one database /var/lib/myapp/db", configKey)
	}
	return cfg
}

func secretData(s *corev1.Secret) map[string]string {
	m := map[string]string{}
	for k, v := range s.Data {
		m[k] = string(v)
	}
	for k, v := range s.StringData {
		m[k] = v
	}
	return m
}

func TestSecret(t *testing.T) {
	objs, err := loadFile("secret.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := objs[0].obj.(*corev1.Secret)
	env := secretData(s)
	src, err := os.ReadFile("../replica/s3/client.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"LITEFS_ACCESS_KEY_ID", "LITEFS_SECRET_ACCESS_KEY"} {
		if _, ok := env[k]; !ok {
			t.Errorf("Secret %s: no %s", s.Name, k)
		}
		if !strings.Contains(string(src), `os.Getenv("`+k+`")`) {
			t.Errorf("../replica/s3/client.go no longer reads %s", k)
		}
	}
}

// TestNamespace checks deploy/namespace.yaml and the guide's use of it: the
// namespace must let the privileged sidecar in, and the guide must create
// it and run every later command in it.
func TestNamespace(t *testing.T) {
	objs, err := loadFile("namespace.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ns, ok := objs[0].obj.(*corev1.Namespace)
	if len(objs) != 1 || !ok {
		t.Fatal("namespace.yaml: want one Namespace")
	}
	if got := ns.Labels["pod-security.kubernetes.io/enforce"]; got != "privileged" {
		t.Errorf("Namespace %s: pod-security.kubernetes.io/enforce is %q, want privileged: the litefs sidecar is privileged", ns.Name, got)
	}
	for _, dir := range []string{"base", "no-native-sidecar"} {
		for _, o := range loadBundle(t, dir).objs {
			if _, isNS := o.obj.(*corev1.Namespace); isNS {
				t.Errorf("%s: %s: the Namespace must not be in a kustomization: `kubectl delete -k` would delete it, and the PVC with it", dir, o.file)
			}
		}
	}
	b, err := os.ReadFile("../docs/kubernetes.md")
	if err != nil {
		t.Fatal(err)
	}
	guide := string(b)
	for _, want := range []string{
		"kubectl apply -f deploy/namespace.yaml",
		"kubectl config set-context --current --namespace=" + ns.Name,
		"kubectl label namespace " + ns.Name + " pod-security.kubernetes.io/enforce=privileged",
	} {
		if !strings.Contains(guide, want) {
			t.Errorf("docs/kubernetes.md does not show %q", want)
		}
	}
	// The commands as typed (at the start of a line), not mentions in prose.
	at := func(re string) int {
		if loc := regexp.MustCompile(`(?m)^` + re).FindStringIndex(guide); loc != nil {
			return loc[0]
		}
		return -1
	}
	create := at(`kubectl apply -f deploy/namespace\.yaml$`)
	for _, later := range []string{`kubectl create secret generic litefs `, `kubectl apply -k deploy/base$`} {
		if i := at(later); i < 0 || i < create {
			t.Errorf("docs/kubernetes.md: the command %s must come after the namespace is created", later)
		}
	}
}

func checkConfigMount(t *testing.T, b *bundle, c *corev1.Container) {
	t.Helper()
	m := mount(c, configVolume)
	if m == nil {
		t.Errorf("%s: does not mount %s", c.Name, configVolume)
		return
	}
	if m.MountPath != configFile || m.SubPath != configKey || !m.ReadOnly {
		t.Errorf("%s: %s mounted at %s subPath %q readOnly %v, want %s subPath %s read-only", c.Name, configVolume, m.MountPath, m.SubPath, m.ReadOnly, configFile, configKey)
	}
	if i := slices.Index(c.Command, "-config"); i < 0 || i+1 >= len(c.Command) || c.Command[i+1] != m.MountPath {
		t.Errorf("%s: command %q does not pass -config %s", c.Name, c.Command, m.MountPath)
	}
}

func checkSecretEnv(t *testing.T, b *bundle, c *corev1.Container) {
	t.Helper()
	for _, e := range c.EnvFrom {
		if e.SecretRef != nil && e.SecretRef.Name == b.secret.Name {
			if e.SecretRef.Optional != nil && *e.SecretRef.Optional {
				t.Errorf("%s: the Secret must not be optional: without it %s has no bucket", c.Name, c.Name)
			}
			return
		}
	}
	t.Errorf("%s: no envFrom secretRef %s", c.Name, b.secret.Name)
}

// checkVolumes asserts that every mount names a volume or a claim template,
// that every volume is used, and what each one is.
func checkVolumes(t *testing.T, b *bundle, all []corev1.Container) {
	spec := b.sts.Spec.Template.Spec
	defined := map[string]string{}
	for _, v := range spec.Volumes {
		if defined[v.Name] != "" {
			t.Errorf("volume %s defined twice", v.Name)
		}
		defined[v.Name] = "volume"
	}
	for _, c := range b.sts.Spec.VolumeClaimTemplates {
		if defined[c.Name] != "" {
			t.Errorf("%s is both a volume and a volumeClaimTemplate", c.Name)
		}
		defined[c.Name] = "claim"
	}
	used := map[string]bool{}
	for _, c := range all {
		for _, m := range c.VolumeMounts {
			if defined[m.Name] == "" {
				t.Errorf("%s mounts %s, which is neither a volume nor a volumeClaimTemplate", c.Name, m.Name)
			}
			used[m.Name] = true
		}
	}
	for n := range defined {
		if !used[n] {
			t.Errorf("%s is defined but no container mounts it", n)
		}
	}
	for _, v := range spec.Volumes {
		switch v.Name {
		case fuseVolume:
			if v.EmptyDir == nil {
				t.Errorf("volume %s must be an emptyDir: the mount point, nothing persists there", fuseVolume)
			}
		case configVolume:
			if v.ConfigMap == nil || v.ConfigMap.Name != b.cm.Name {
				t.Errorf("volume %s must be the ConfigMap %s", configVolume, b.cm.Name)
			}
		default:
			t.Errorf("unexpected volume %s", v.Name)
		}
	}
	if len(b.sts.Spec.VolumeClaimTemplates) != 1 || b.sts.Spec.VolumeClaimTemplates[0].Name != dataVolume {
		t.Fatalf("want one volumeClaimTemplate %s", dataVolume)
	}
	pvc := b.sts.Spec.VolumeClaimTemplates[0].Spec
	if !slices.Equal(pvc.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}) {
		t.Errorf("claim %s: accessModes %v, want ReadWriteOnce", dataVolume, pvc.AccessModes)
	}
	if q, ok := pvc.Resources.Requests[corev1.ResourceStorage]; !ok || q.Cmp(resource.MustParse(pvcSize)) != 0 {
		t.Errorf("claim %s: storage %v, want %s", dataVolume, pvc.Resources.Requests, pvcSize)
	} else {
		// The volume holds the database, its WAL, up to staging-max-bytes
		// of staged segments and a snapshot (docs/kubernetes.md, "Sizing
		// the volume"). myapp's database is a few KiB: its WAL (4 MiB at
		// SQLite's default autocheckpoint), a snapshot and the database fit
		// in 32 MiB.
		cfg := parseConfig(t, b)
		for _, db := range cfg.DBs {
			if need := int64(db.Replica.StagingMaxBytes) + 32<<20; q.Value() < need {
				t.Errorf("claim %s: %s holds less than %s's staging-max-bytes (%d bytes) plus 32 MiB for the database, its WAL and a snapshot", dataVolume, q.String(), db.Path, int64(db.Replica.StagingMaxBytes))
			}
		}
	}
	for _, c := range all {
		if m := mount(&c, fuseVolume); m != nil && m.SubPath != "" {
			t.Errorf("%s: no subPath on %s: propagation works on the whole volume", c.Name, fuseVolume)
		}
	}
}

// checkService asserts the Service selects the pod and reaches its named
// ports.
func checkService(t *testing.T, b *bundle, all []corev1.Container) {
	svc := b.svc
	if len(svc.Spec.Selector) == 0 || !subset(svc.Spec.Selector, b.sts.Spec.Template.Labels) {
		t.Errorf("Service %s: selector %v does not select the pod (labels %v)", svc.Name, svc.Spec.Selector, b.sts.Spec.Template.Labels)
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("Service %s: the StatefulSet's governing Service should be headless (clusterIP: None)", svc.Name)
	}
	pod := map[string]int32{}
	for _, c := range all {
		for _, p := range c.Ports {
			pod[p.Name] = p.ContainerPort
		}
	}
	want := map[string]int32{"http": appPort, "metrics": metricsPort}
	for _, p := range svc.Spec.Ports {
		if want[p.Name] != p.Port {
			t.Errorf("Service %s: port %s is %d", svc.Name, p.Name, p.Port)
		}
		delete(want, p.Name)
		if p.TargetPort.Type != intstr.String || pod[p.TargetPort.StrVal] != p.Port {
			t.Errorf("Service %s: port %s targets %s, want the container port named %s (%d)", svc.Name, p.Name, p.TargetPort.String(), p.Name, p.Port)
		}
	}
	for n := range want {
		t.Errorf("Service %s: no port %s", svc.Name, n)
	}
}

// checkGrace asserts the kubelet waits longer than litefs' preStop plus
// shutdown-timeout before SIGKILL, so SIGTERM's flush to S3 can finish.
func checkGrace(t *testing.T, b *bundle, cfg *config.Config, side *corev1.Container) {
	g := b.sts.Spec.Template.Spec.TerminationGracePeriodSeconds
	if g == nil {
		t.Errorf("terminationGracePeriodSeconds unset (30s default): must exceed shutdown-timeout %v", time.Duration(cfg.ShutdownTimeout))
		return
	}
	need := time.Duration(cfg.ShutdownTimeout)
	if side.Lifecycle != nil && side.Lifecycle.PreStop != nil {
		h := side.Lifecycle.PreStop
		switch {
		case h.Sleep != nil:
			need += time.Duration(h.Sleep.Seconds) * time.Second
		case h.Exec != nil && len(h.Exec.Command) == 2 && h.Exec.Command[0] == "sleep":
			n, err := strconv.Atoi(h.Exec.Command[1])
			if err != nil {
				t.Fatalf("%s preStop %q: want sleep SECONDS", litefsName, h.Exec.Command)
			}
			need += time.Duration(n) * time.Second
		default:
			t.Fatalf("%s: cannot tell how long the preStop hook takes", litefsName)
		}
	}
	if time.Duration(*g)*time.Second <= need {
		t.Errorf("terminationGracePeriodSeconds %d must exceed preStop + shutdown-timeout = %v", *g, need)
	}
}

// TestEveryManifestIsChecked fails on a YAML file that no test reads.
func TestEveryManifestIsChecked(t *testing.T) {
	seen := map[string]bool{"secret.yaml": true, "namespace.yaml": true}
	for _, dir := range []string{"base", "no-native-sidecar"} {
		if _, err := build(dir, seen); err != nil {
			t.Fatal(err)
		}
	}
	err := filepath.WalkDir(".", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) && !seen[p] {
			t.Errorf("%s is not part of base/, no-native-sidecar/ or secret.yaml: no test checks it", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestKustomizeAgrees compares build's output with kustomize's when
// kustomize (or kubectl) is installed: the patch semantics are the same.
func TestKustomizeAgrees(t *testing.T) {
	var cmd []string
	if p, err := exec.LookPath("kustomize"); err == nil {
		cmd = []string{p, "build"}
	} else if p, err := exec.LookPath("kubectl"); err == nil {
		cmd = []string{p, "kustomize"}
	} else {
		t.Skip("neither kustomize nor kubectl in PATH")
	}
	for _, dir := range []string{"base", "no-native-sidecar"} {
		out, err := exec.Command(cmd[0], append(cmd[1:], dir)...).Output()
		if err != nil {
			t.Fatalf("%s %s: %v", strings.Join(cmd, " "), dir, err)
		}
		ours, err := build(dir, map[string]bool{})
		if err != nil {
			t.Fatal(err)
		}
		var theirs []object
		for i, doc := range splitYAML(out) {
			o, err := decodeDoc(dir+" (kustomize output)["+strconv.Itoa(i)+"]", doc)
			if err != nil {
				t.Fatal(err)
			}
			theirs = append(theirs, o)
		}
		if len(ours) != len(theirs) {
			t.Fatalf("%s: %d objects, kustomize made %d", dir, len(ours), len(theirs))
		}
		for _, o := range ours {
			var match *object
			for i := range theirs {
				if theirs[i].kind == o.kind && theirs[i].name == o.name {
					match = &theirs[i]
				}
			}
			if match == nil {
				t.Errorf("%s: kustomize made no %s %s", dir, o.kind, o.name)
				continue
			}
			normalize(o.obj)
			normalize(match.obj)
			if !equality.Semantic.DeepEqual(o.obj, match.obj) {
				t.Errorf("%s: %s %s differs from kustomize's", dir, o.kind, o.name)
			}
		}
	}
}

// normalize sorts containers by name: merge order is not part of their
// meaning for regular containers.
func normalize(obj any) {
	if s, ok := obj.(*appsv1.StatefulSet); ok {
		cs := s.Spec.Template.Spec.Containers
		sort.Slice(cs, func(i, j int) bool { return cs[i].Name < cs[j].Name })
	}
}

func find(cs []corev1.Container, name string) *corev1.Container {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}

func names(cs []corev1.Container) []string {
	var n []string
	for _, c := range cs {
		n = append(n, c.Name)
	}
	return n
}

func mount(c *corev1.Container, volume string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].Name == volume {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

func mountPath(t *testing.T, c *corev1.Container, volume string) string {
	t.Helper()
	m := mount(c, volume)
	if m == nil {
		t.Errorf("%s does not mount %s", c.Name, volume)
		return ""
	}
	return m.MountPath
}

func checkPropagation(t *testing.T, c *corev1.Container, volume string, want corev1.MountPropagationMode) {
	t.Helper()
	m := mount(c, volume)
	if m == nil {
		t.Errorf("%s does not mount %s", c.Name, volume)
		return
	}
	if m.MountPropagation == nil || *m.MountPropagation != want {
		t.Errorf("%s: %s needs mountPropagation %s", c.Name, volume, want)
	}
}

func checkPort(t *testing.T, c *corev1.Container, name string, port int32) {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			if p.ContainerPort != port || (p.Protocol != "" && p.Protocol != corev1.ProtocolTCP) {
				t.Errorf("%s: port %s is %d/%s, want %d/TCP", c.Name, name, p.ContainerPort, p.Protocol, port)
			}
			return
		}
	}
	t.Errorf("%s: no containerPort named %s (%d)", c.Name, name, port)
}

func checkHTTPProbe(t *testing.T, c *corev1.Container, what string, p *corev1.Probe, path, port string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s: want an httpGet %s on %s", c.Name, what, path)
		return
	}
	if p.HTTPGet.Path != path || p.HTTPGet.Port.Type != intstr.String || p.HTTPGet.Port.StrVal != port {
		t.Errorf("%s: %s GETs %s on port %s, want %s on the port named %s", c.Name, what, p.HTTPGet.Path, p.HTTPGet.Port.String(), path, port)
	}
}

// checkAppServesHealth asserts that examples/myapp serves the probes' path
// with its own handler: under the catch-all "/" a probe would count as a
// visit.
func checkAppServesHealth(t *testing.T) {
	t.Helper()
	src, err := os.ReadFile("../examples/myapp/main.go")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`HandleFunc\("(GET )?` + regexp.QuoteMeta(appHealthPath) + `"`).Match(src) {
		t.Errorf("../examples/myapp/main.go has no handler for %s, which the probes GET: they would increment the counter", appHealthPath)
	}
}

func subset(sub, super map[string]string) bool {
	for k, v := range sub {
		if super[k] != v {
			return false
		}
	}
	return true
}
