// Package s3test starts S3 servers on 127.0.0.1 for tests: versitygw (a real
// S3 gateway over a posix directory, with conditional writes) as a child
// process, and gofakes3 in process. Every server lives as long as its test.
package s3test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	lfs3 "github.com/litefs-dev/litefs/replica/s3"
)

// DefaultBucket is the bucket every server starts with.
const DefaultBucket = "litefs-test"

// Server is a running S3 endpoint with one bucket.
type Server struct {
	Endpoint  string // http://127.0.0.1:PORT
	Bucket    string
	AccessKey string
	SecretKey string
	Region    string

	// Dir is versitygw's posix root (buckets are directories under it).
	Dir string
	// Cmd and Pid are versitygw's process (nil/0 for gofakes3), for tests
	// that stop it (SIGSTOP) or kill it.
	Cmd *exec.Cmd
	Pid int

	Backend gofakes3.Backend // gofakes3's storage (nil for versitygw)

	out  *syncBuffer
	done chan struct{}
}

// Config returns a client config for the replica path on this server, with
// conditional writes on.
func (s *Server) Config(path string) lfs3.Config {
	return lfs3.Config{
		Bucket:            s.Bucket,
		Path:              path,
		Endpoint:          s.Endpoint,
		Region:            s.Region,
		ForcePathStyle:    true,
		AccessKeyID:       s.AccessKey,
		SecretAccessKey:   s.SecretKey,
		ConditionalWrites: true,
	}
}

// Client returns a client for the replica path.
func (s *Server) Client(t testing.TB, path string) *lfs3.Client {
	t.Helper()
	c, err := lfs3.NewClient(context.Background(), s.Config(path))
	if err != nil {
		t.Fatalf("s3test: new client: %v", err)
	}
	return c
}

// Pause stops versitygw with SIGSTOP (it keeps its port, answers nothing).
func (s *Server) Pause(t testing.TB) { s.signal(t, syscall.SIGSTOP) }

// Resume continues a paused versitygw.
func (s *Server) Resume(t testing.TB) { s.signal(t, syscall.SIGCONT) }

func (s *Server) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if s.Cmd == nil {
		t.Fatalf("s3test: %v: not a child process", sig)
	}
	if err := s.Cmd.Process.Signal(sig); err != nil {
		t.Fatalf("s3test: signal %v: %v", sig, err)
	}
}

// Output returns what versitygw printed so far.
func (s *Server) Output() string {
	if s.out == nil {
		return ""
	}
	return s.out.String()
}

// FindVersityGW returns the versitygw binary: $VERSITYGW, then PATH, then
// $(go env GOPATH)/bin.
func FindVersityGW() (string, error) {
	if p := os.Getenv("VERSITYGW"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("VERSITYGW=%s: %w", p, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	if gp := goPath(); gp != "" {
		for _, dir := range filepath.SplitList(gp) {
			p := filepath.Join(dir, "bin", "versitygw")
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
		}
	}
	return "", errors.New("versitygw not installed: run make deps")
}

func goPath() string {
	gobin := "go"
	if _, err := exec.LookPath(gobin); err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	if out, err := exec.Command(gobin, "env", "GOPATH").Output(); err == nil {
		if s := strings.TrimSpace(string(out)); s != "" {
			return s
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, "go")
	}
	return ""
}

// StartVersityGW starts `versitygw --port 127.0.0.1:PORT --access KEY
// --secret SECRET posix DIR` on a free port with a t.TempDir() root, waits
// until it answers, creates DefaultBucket, and stops it (and waits) in
// t.Cleanup. A missing binary fails the test: CI must run these.
func StartVersityGW(t testing.TB) *Server {
	t.Helper()
	bin, err := FindVersityGW()
	if err != nil {
		t.Fatalf("%v", err)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // the free port may be taken before versitygw binds it
		s, err := startVersityGW(t, bin)
		if err == nil {
			createBucket(t, s)
			return s
		}
		lastErr = err
	}
	t.Fatalf("s3test: start versitygw: %v", lastErr)
	return nil
}

func startVersityGW(t testing.TB, bin string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{
		Endpoint:  "http://127.0.0.1:" + port,
		Bucket:    DefaultBucket,
		AccessKey: "litefsaccess",
		SecretKey: "litefssecret0123456789",
		Region:    "us-east-1",
		Dir:       t.TempDir(),
		out:       &syncBuffer{},
		done:      make(chan struct{}),
	}
	cmd := exec.Command(bin, "--port", "127.0.0.1:"+port, "--access", s.AccessKey, "--secret", s.SecretKey,
		"--region", s.Region, "--quiet", "posix", s.Dir)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	// Its own process group: a SIGSTOP test or a Ctrl-C reaches only it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s.Cmd, s.Pid = cmd, cmd.Process.Pid
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(s.done) }()

	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGCONT) // in case a test left it stopped
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-s.done
		}
	}

	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-s.done:
			return nil, fmt.Errorf("versitygw exited at start (%v): %s", waitErr, tail(s.out.String(), 2000))
		default:
		}
		if answers(s.Endpoint) {
			break
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("versitygw did not answer on %s within 15s: %s", s.Endpoint, tail(s.out.String(), 2000))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("versitygw output:\n%s", tail(s.out.String(), 4000))
		}
	})
	return s, nil
}

// answers reports whether anything speaks HTTP at endpoint.
func answers(endpoint string) bool {
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil}}
	resp, err := c.Get(endpoint + "/")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}

func createBucket(t testing.TB, s *Server) {
	t.Helper()
	c := s.Client(t, "x")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := c.SDK().CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: aws.String(s.Bucket)})
	var owned *types.BucketAlreadyOwnedByYou
	if err != nil && !errors.As(err, &owned) {
		t.Fatalf("s3test: create bucket %s: %v", s.Bucket, err)
	}
}

// StartGoFakeS3 serves an in-memory gofakes3 on 127.0.0.1 with
// DefaultBucket, closed in t.Cleanup. gofakes3 checks no signatures.
func StartGoFakeS3(t testing.TB) *Server {
	t.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket(DefaultBucket); err != nil {
		t.Fatalf("s3test: gofakes3 create bucket: %v", err)
	}
	faker := gofakes3.New(backend)
	ts := httptest.NewServer(faker.Server()) // listens on 127.0.0.1
	t.Cleanup(ts.Close)
	return &Server{
		Endpoint:  ts.URL,
		Bucket:    DefaultBucket,
		AccessKey: "fakeaccess",
		SecretKey: "fakesecret",
		Region:    "us-east-1",
		Backend:   backend,
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
