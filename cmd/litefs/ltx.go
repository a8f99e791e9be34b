package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/config"
	"github.com/litefs-dev/litefs/replica"
	"github.com/litefs-dev/litefs/replica/backends"
	"github.com/litefs-dev/litefs/replica/file"
)

const ltxUsage = `usage: litefs ltx [-json] [-config FILE] DB
       litefs ltx [-json] -replica URL

Lists the LTX files a replica holds, every level from 0 to the snapshots
(9): level, TXID range, creation time (the LTX header's timestamp) and size.

DB is the database's path as the app sees it (under fuse.dir) or its path
under data.dir; a relative path is taken from the working directory.

Flags:
`

// ltxFile is one line of `litefs ltx -json`: the text's columns.
type ltxFile struct {
	Level   int       `json:"level"`
	MinTXID ltx.TXID  `json:"min_txid"`
	MaxTXID ltx.TXID  `json:"max_txid"`
	Created time.Time `json:"created"`
	Size    int64     `json:"size"`
}

// ltxCommand lists a replica's files: level, TXID range, time, size.
func ltxCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("litefs ltx", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, ltxUsage); fs.PrintDefaults() }
	configPath := fs.String("config", "", "config file (default $LITEFS_CONFIG, else "+config.DefaultPath+")")
	replicaURL := fs.String("replica", "", "replica URL instead of a config and DB")
	asJSON := fs.Bool("json", false, "print a JSON array, one object per file")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	ctx := context.Background()
	rc := config.ReplicaConfig{URL: *replicaURL}
	switch {
	case *replicaURL != "" && fs.NArg() > 0:
		return usageErr(stderr, "litefs ltx", "unexpected argument %q: give -replica URL or a database path, not both", fs.Arg(0))
	case *replicaURL == "" && fs.NArg() == 0:
		return usageErr(stderr, "litefs ltx", "give the database path (DB), or -replica URL")
	case *replicaURL == "" && fs.NArg() > 1:
		return usageErr(stderr, "litefs ltx", "unexpected argument %q: give one database path", fs.Arg(1))
	case *replicaURL == "":
		dbPath, err := filepath.Abs(fs.Arg(0))
		if err != nil {
			fmt.Fprintln(stderr, "litefs ltx:", err)
			return 1
		}
		cfg, err := config.Read(config.FilePath(*configPath))
		if err != nil {
			fmt.Fprintln(stderr, "litefs ltx:", err)
			return 1
		}
		db, err := cfg.FindDB(dbPath)
		if err != nil {
			fmt.Fprintln(stderr, "litefs ltx:", err)
			return 1
		}
		rc = db.Replica
	}
	client, err := backends.NewClient(ctx, rc.URL, rc.Settings())
	if err != nil {
		fmt.Fprintln(stderr, "litefs ltx:", err)
		return 1
	}
	// A missing directory would list as an empty replica; here it is far
	// more likely a mistyped path.
	if fc, ok := client.(*file.Client); ok {
		if err := fc.CheckDir(); err != nil {
			fmt.Fprintf(stderr, "litefs ltx: %v: check the replica URL\n", err)
			return 1
		}
	}
	files := []ltxFile{}
	for level := 0; level <= replica.SnapshotLevel; level++ {
		infos, err := client.LTXFiles(ctx, level, 0)
		if err != nil {
			fmt.Fprintln(stderr, "litefs ltx:", err)
			return 1
		}
		for _, info := range infos {
			files = append(files, ltxFile{Level: level, MinTXID: info.MinTXID, MaxTXID: info.MaxTXID, Created: info.CreatedAt.UTC(), Size: info.Size})
		}
	}
	if *asJSON {
		return printJSON(stdout, stderr, "litefs ltx", files)
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "LEVEL\tMIN\tMAX\tCREATED\tSIZE")
	for _, f := range files {
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%d\n", f.Level, f.MinTXID, f.MaxTXID, f.Created.Format(time.RFC3339Nano), f.Size)
	}
	w.Flush()
	return 0
}

// printJSON writes v, indented, for -json.
func printJSON(stdout, stderr io.Writer, name string, v any) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}

// usageErr reports a mistake in the command line: one line, exit status 2.
func usageErr(stderr io.Writer, name, format string, a ...any) int {
	fmt.Fprintf(stderr, "%s: %s (run '%s -h' for the usage)\n", name, fmt.Sprintf(format, a...), name)
	return 2
}
