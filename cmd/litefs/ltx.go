package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/litefs-dev/litefs/config"
	"github.com/litefs-dev/litefs/replica"
	"github.com/litefs-dev/litefs/replica/backends"
)

// ltxCommand lists a replica's files: level, TXID range, time, size.
func ltxCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("litefs ltx", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "config file (default $LITEFS_CONFIG, else "+config.DefaultPath+")")
	replicaURL := fs.String("replica", "", "replica URL instead of a config and DB")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx := context.Background()
	rc := config.ReplicaConfig{URL: *replicaURL}
	if *replicaURL == "" {
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, "usage: litefs ltx [-config FILE] DB | litefs ltx -replica URL")
			return 2
		}
		cfg, err := config.Read(config.FilePath(*configPath))
		if err != nil {
			fmt.Fprintln(stderr, "litefs ltx:", err)
			return 1
		}
		db, err := cfg.FindDB(fs.Arg(0))
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
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "LEVEL\tMIN\tMAX\tCREATED\tSIZE")
	for level := 0; level <= replica.SnapshotLevel; level++ {
		infos, err := client.LTXFiles(ctx, level, 0)
		if err != nil {
			fmt.Fprintln(stderr, "litefs ltx:", err)
			return 1
		}
		for _, info := range infos {
			fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%d\n", level, info.MinTXID, info.MaxTXID, info.CreatedAt.UTC().Format(time.RFC3339Nano), info.Size)
		}
	}
	w.Flush()
	return 0
}
