package bench

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
)

// The summary: every benchmark adds its line; `make bench` ends with the
// whole table, so one run's figures stand side by side.
var (
	summaryMu sync.Mutex
	summary   []string
)

// report prints a result line now and keeps it for the summary.
func report(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	fmt.Fprintln(os.Stderr, line)
	summaryMu.Lock()
	summary = append(summary, line)
	summaryMu.Unlock()
}

func TestMain(m *testing.M) {
	code := m.Run()
	if len(summary) > 0 {
		host, _ := os.Hostname()
		kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
		fmt.Printf("\n== litefs benchmark summary (%s, kernel %s) ==\n", host, strings.TrimSpace(string(kernel)))
		for _, l := range summary {
			fmt.Println("  " + l)
		}
	}
	os.Exit(code)
}
