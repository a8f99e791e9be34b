package testenv_test

import (
	"strings"
	"testing"
	"time"

	"github.com/litefs-dev/litefs/config"
	"github.com/litefs-dev/litefs/internal/testenv"
)

// The builder's output is a config litefs accepts, with what was asked.
func TestConfigTOML(t *testing.T) {
	c := testenv.Config{
		FUSEDir: "/mnt/a", DataDir: "/data/a", HTTPAddr: "127.0.0.1:0", Passthrough: testenv.Bool(false),
		DBExtra: "allow-empty-db = true",
		Replica: testenv.Replica{URL: "s3://bucket/db", SyncInterval: "250ms", Endpoint: "http://127.0.0.1:1",
			Region: "us-east-1", AccessKey: "k", SecretKey: "s", Extra: `lease-ttl = "9s"`},
	}
	cfg, err := config.Parse("test.toml", c.TOML())
	if err != nil {
		t.Fatalf("%v\n%s", err, c.TOML())
	}
	db := cfg.DBs[0]
	if db.Path != "/mnt/a/db" || !db.AllowEmptyDB || *cfg.FUSE.Passthrough || cfg.HTTP.Addr != "127.0.0.1:0" {
		t.Fatalf("parsed %+v", cfg)
	}
	r := db.Replica
	if time.Duration(*r.SyncInterval) != 250*time.Millisecond || time.Duration(r.LeaseTTL) != 9*time.Second || r.Endpoint != "http://127.0.0.1:1" || !r.ForcePathStyle {
		t.Fatalf("replica %+v", r)
	}
	if got := (testenv.Config{FUSEDir: "/m", DataDir: "/d", Replica: testenv.Replica{URL: "file:///r"}}).TOML(); strings.Contains(got, "[http]") || strings.Contains(got, "sync-interval") {
		t.Fatalf("unset fields rendered:\n%s", got)
	}
}

func TestLogBuffer(t *testing.T) {
	var b testenv.LogBuffer
	done := make(chan struct{})
	go func() { b.Write([]byte("a")); close(done) }()
	b.Write([]byte("b"))
	<-done
	if s := b.String(); len(s) != 2 || !strings.Contains(s, "a") {
		t.Fatalf("buffer %q", s)
	}
	b.Reset()
	if b.String() != "" {
		t.Fatal("Reset left bytes")
	}
}
