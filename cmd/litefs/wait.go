package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/superfly/ltx"

	"github.com/litefs-dev/litefs/config"
	"github.com/litefs-dev/litefs/internal/daemon"
)

const waitUsage = `usage: litefs wait [-config FILE] [-addr HOST:PORT] [-token TOKEN] [-timeout 30s] -txid N DB

Waits until the replica holds transaction N of database DB, asking the
running daemon (GET /wait on its [http] addr). Exits 0 once it does, 1 when
the timeout passes first, when replication of DB stopped (another writer
took the replica, the database left WAL mode) or when no daemon answers.

DB is the database's path as the app opens it (under fuse.dir) or its path
under data.dir; a relative path is taken from the working directory. N is
16 hex digits, as GET /txid and litefs status print it, or decimal. The
token is -token, else $LITEFS_HTTP_TOKEN, else the config's [http] token;
with -addr, the config is read only when -config names it.

Flags:
`

// waitCommand waits for a TXID to reach the replica, by GET /wait.
func waitCommand(args []string, stdout, stderr io.Writer) int {
	const name = "litefs wait"
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, waitUsage); fs.PrintDefaults() }
	configPath := fs.String("config", "", "config file whose [http] addr and token to use (default $LITEFS_CONFIG, else "+config.DefaultPath+")")
	addrFlag := fs.String("addr", "", "the daemon's HTTP address instead of the config's")
	token := fs.String("token", "", "the [http] token (default $LITEFS_HTTP_TOKEN, else the config's)")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait")
	txidFlag := fs.String("txid", "", "the TXID to wait for (16 hex digits, or decimal)")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	switch {
	case fs.NArg() == 0:
		return usageErr(stderr, name, "give the database path (DB)")
	case fs.NArg() > 1:
		return usageErr(stderr, name, "unexpected argument %q: give one database path", fs.Arg(1))
	case *txidFlag == "":
		return usageErr(stderr, name, "give -txid N: the TXID to wait for")
	case *timeout < 0:
		return usageErr(stderr, name, "-timeout %s: give 0s or more", *timeout)
	}
	txid, err := daemon.ParseTXID(*txidFlag)
	if err != nil {
		return usageErr(stderr, name, "-%v", err)
	}
	addr := *addrFlag
	if addr != "" {
		if addr, err = dialAddr(addr); err != nil {
			return usageErr(stderr, name, "-addr: %v", err)
		}
	}
	dbPath, err := filepath.Abs(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	if *token == "" {
		*token = os.Getenv("LITEFS_HTTP_TOKEN")
	}
	if addr == "" || *configPath != "" {
		cfg, err := config.Read(config.FilePath(*configPath))
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			return 1
		}
		if *token == "" {
			*token = cfg.HTTP.Token
		}
		if addr == "" {
			if cfg.HTTP.Addr == "off" {
				fmt.Fprintf(stderr, "%s: http.addr is \"off\" in %s: the daemon serves no /wait; set [http] addr\n", name, cfg.Path)
				return 1
			}
			if addr, err = dialAddr(cfg.HTTP.Addr); err != nil {
				fmt.Fprintf(stderr, "%s: http.addr: %v\n", name, err)
				return 1
			}
		}
	}
	got, err := waitTXID(addr, *token, dbPath, txid, *timeout)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: the replica holds TXID %s\n", got.Path, got.ReplicaTXID)
	return 0
}

// waitTXID asks the daemon at addr to wait, in requests of at most
// daemon.MaxWait, until timeout has passed.
func waitTXID(addr, token, dbPath string, txid ltx.TXID, timeout time.Duration) (*daemon.TXIDs, error) {
	deadline := time.Now().Add(timeout)
	for {
		chunk := min(time.Until(deadline), daemon.MaxWait).Round(time.Millisecond)
		q := url.Values{"db": {dbPath}, "txid": {txid.String()}, "timeout": {max(chunk, 0).String()}}
		got, code, err := getWait(addr, token, q, chunk)
		if code == http.StatusGatewayTimeout && time.Until(deadline) > 0 {
			continue
		}
		return got, err
	}
}

// getWait sends one GET /wait and returns its answer, or the status and an
// error that says what went wrong.
func getWait(addr, token string, q url.Values, wait time.Duration) (*daemon.TXIDs, int, error) {
	req, err := http.NewRequest("GET", "http://"+addr+"/wait?"+q.Encode(), nil)
	if err != nil {
		return nil, 0, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	client := &http.Client{Timeout: wait + 10*time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("no litefs daemon answers at %s: is it running? (%v)", addr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, 0, fmt.Errorf("read the answer of %s: %w", addr, err)
	}
	msg := strings.TrimSpace(string(body))
	switch resp.StatusCode {
	case http.StatusOK:
		var got daemon.TXIDs
		if err := json.Unmarshal(body, &got); err != nil {
			return nil, resp.StatusCode, fmt.Errorf("%s/wait is not litefs's answer (%v): is it a litefs daemon?", addr, err)
		}
		return &got, resp.StatusCode, nil
	case http.StatusNotFound:
		if !strings.HasPrefix(msg, "no such database") {
			return nil, resp.StatusCode, fmt.Errorf("%s answers 404 for /wait: not a litefs daemon, or one too old to serve /wait", addr)
		}
	case http.StatusUnauthorized:
		msg += " (give -token, $LITEFS_HTTP_TOKEN or a -config whose [http] token is set)"
	}
	return nil, resp.StatusCode, errors.New(msg)
}
