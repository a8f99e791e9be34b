package testenv

import (
	"fmt"
	"path/filepath"
	"strings"
)

// MultiConfig is the litefs.toml of several databases on one mount, each
// with its own [[dbs]] entry and replica. Empty fields are left out.
// Config.TOML is the one-database case of it.
type MultiConfig struct {
	FUSEDir     string
	DataDir     string
	HTTPAddr    string // "off" turns HTTP off
	HTTPExtra   string // more [http] keys, as TOML lines (needs HTTPAddr)
	Passthrough *bool
	FUSEExtra   string // more [fuse] keys, as TOML lines
	DBs         []MultiDB
}

// MultiDB is one [[dbs]] entry of a MultiConfig.
type MultiDB struct {
	Name    string // path under FUSEDir; required
	Extra   string // more [[dbs]] keys, as TOML lines
	Replica Replica
}

// DBPath is database i's path as the app sees it.
func (c MultiConfig) DBPath(i int) string { return filepath.Join(c.FUSEDir, c.DBs[i].Name) }

// TOML renders the config.
func (c MultiConfig) TOML() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n[fuse]\ndir = %q\n", c.FUSEDir)
	if c.Passthrough != nil {
		fmt.Fprintf(&b, "passthrough = %v\n", *c.Passthrough)
	}
	line(&b, c.FUSEExtra)
	fmt.Fprintf(&b, "[data]\ndir = %q\n", c.DataDir)
	if c.HTTPAddr != "" {
		fmt.Fprintf(&b, "[http]\naddr = %q\n", c.HTTPAddr)
		line(&b, c.HTTPExtra)
	}
	for i, db := range c.DBs {
		fmt.Fprintf(&b, "[[dbs]]\npath = %q\n", c.DBPath(i))
		line(&b, db.Extra)
		r := db.Replica
		fmt.Fprintf(&b, "[dbs.replica]\nurl = %q\n", r.URL)
		if r.Endpoint != "" {
			fmt.Fprintf(&b, "endpoint = %q\nregion = %q\nforce-path-style = true\naccess-key-id = %q\nsecret-access-key = %q\n",
				r.Endpoint, r.Region, r.AccessKey, r.SecretKey)
		}
		if r.SyncInterval != "" {
			fmt.Fprintf(&b, "sync-interval = %q\n", r.SyncInterval)
		}
		line(&b, r.Extra)
	}
	return b.String()
}
