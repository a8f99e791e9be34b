package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/litefs-dev/litefs/config"
	"github.com/litefs-dev/litefs/internal/daemon"
)

const statusUsage = `usage: litefs status [-json] [-config FILE] [-addr HOST:PORT]

Asks the running daemon (GET /status on its [http] addr) how each database
is replicating: its state, the last staged TXID, the newest TXID the
replica confirmed, the replication lag and the bytes staged but not yet
uploaded. An address without a host (":9090") or with 0.0.0.0 or [::] is
asked on 127.0.0.1.

Flags:
`

// statusCommand prints what GET /status answers.
func statusCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("litefs status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, statusUsage); fs.PrintDefaults() }
	configPath := fs.String("config", "", "config file whose [http] addr to ask (default $LITEFS_CONFIG, else "+config.DefaultPath+")")
	addrFlag := fs.String("addr", "", "the daemon's HTTP address instead of the config's")
	asJSON := fs.Bool("json", false, "print a JSON array, one object per database")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		return usageErr(stderr, "litefs status", "unexpected argument %q: status reports every database", fs.Arg(0))
	}
	addr := *addrFlag
	if addr == "" {
		cfg, err := config.Read(config.FilePath(*configPath))
		if err != nil {
			fmt.Fprintln(stderr, "litefs status:", err)
			return 1
		}
		if addr = cfg.HTTP.Addr; addr == "off" {
			fmt.Fprintf(stderr, "litefs status: http.addr is \"off\" in %s: the daemon serves no status; set [http] addr\n", cfg.Path)
			return 1
		}
	}
	addr, err := dialAddr(addr)
	if err != nil && *addrFlag != "" {
		return usageErr(stderr, "litefs status", "-addr: %v", err)
	} else if err != nil {
		fmt.Fprintf(stderr, "litefs status: http.addr: %v\n", err)
		return 1
	}
	dbs, err := fetchStatus(addr)
	if err != nil {
		fmt.Fprintln(stderr, "litefs status:", err)
		return 1
	}
	if *asJSON {
		return printJSON(stdout, stderr, "litefs status", dbs)
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tPATH\tSTATE\tTXID\tREPLICA_TXID\tLAG\tSTAGED_BYTES")
	for _, db := range dbs {
		lag := time.Duration(db.LagSeconds * float64(time.Second)).Round(time.Millisecond)
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", db.Name, db.Path, db.State, db.TXID, db.ReplicaTXID, lag, db.StagedBytes)
	}
	w.Flush()
	for _, db := range dbs {
		if db.Error != "" {
			fmt.Fprintf(stdout, "%s: %s: %s\n", db.Name, db.State, db.Error)
		}
	}
	return 0
}

// dialAddr turns a listen address into one to connect to: no host, or an
// unspecified one (0.0.0.0, [::]), is this machine's loopback.
func dialAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return "", fmt.Errorf("address %q: want HOST:PORT, like 127.0.0.1:9090 or :9090", addr)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}

// fetchStatus asks the daemon at addr.
func fetchStatus(addr string) ([]daemon.DBStatus, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + addr + "/status")
	if err != nil {
		return nil, fmt.Errorf("no litefs daemon answers at %s: is it running? (%v)", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("read the answer of %s: %w", addr, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, fmt.Errorf("%s answers 404 for /status: not a litefs daemon, or one too old to serve /status", addr)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("%s/status: %s: %s", addr, resp.Status, strings.TrimSpace(string(body)))
	}
	var dbs []daemon.DBStatus
	if err := json.Unmarshal(body, &dbs); err != nil {
		return nil, fmt.Errorf("%s/status is not litefs's status (%v): is it a litefs daemon?", addr, err)
	}
	return dbs, nil
}
