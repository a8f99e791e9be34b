package deploy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// exportedMetrics reads the metric names and their labels from the main
// module's prometheus.NewDesc calls: the source of truth for what litefs
// exports.
func exportedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	files, err := filepath.Glob("../internal/daemon/*.go")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`prometheus\.NewDesc\(\s*"([a-z0-9_]+)"\s*,\s*"(?:[^"\\]|\\.)*"\s*,\s*\[\]string\{([^}]*)\}`)
	m := map[string][]string{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range re.FindAllStringSubmatch(string(src), -1) {
			var labels []string
			for _, l := range strings.Split(s[2], ",") {
				if l = strings.Trim(strings.TrimSpace(l), `"`); l != "" {
					labels = append(labels, l)
				}
			}
			m[s[1]] = labels
		}
	}
	if len(m) == 0 {
		t.Fatal("found no prometheus.NewDesc calls in ../internal/daemon/*.go: update exportedMetrics")
	}
	return m
}

// Labels Prometheus adds to every scraped series.
var targetLabels = map[string]bool{"instance": true, "job": true, "namespace": true, "pod": true, "container": true}

func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title      string `json:"title"`
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	if dash.Title == "" || dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatal("grafana-dashboard.json: want a title, a uid and panels")
	}
	metrics := exportedMetrics(t)
	allLabels := map[string]bool{}
	for _, ls := range metrics {
		for _, l := range ls {
			allLabels[l] = true
		}
	}

	var exprs []string
	vars := map[string]bool{}
	for _, v := range dash.Templating.List {
		vars[v.Name] = true
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Errorf("variable %s: query: %v", v.Name, err)
		}
		exprs = append(exprs, q.Query)
	}
	ids := map[float64]bool{}
	var walk func(raw json.RawMessage)
	walk = func(raw json.RawMessage) {
		var p struct {
			ID         float64 `json:"id"`
			Type       string  `json:"type"`
			Title      string  `json:"title"`
			Datasource *struct {
				UID string `json:"uid"`
			} `json:"datasource"`
			Targets []struct {
				Expr  string `json:"expr"`
				RefID string `json:"refId"`
			} `json:"targets"`
			Panels []json.RawMessage `json:"panels"`
		}
		if err := json.Unmarshal(raw, &p); err != nil {
			t.Errorf("panel: %v", err)
			return
		}
		if ids[p.ID] {
			t.Errorf("panel %q: id %v used twice", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.Type != "row" {
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: datasource must be the ${datasource} variable", p.Title)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q: no queries", p.Title)
			}
		}
		for _, tg := range p.Targets {
			if tg.Expr == "" || tg.RefID == "" {
				t.Errorf("panel %q: a target without expr or refId", p.Title)
			}
			exprs = append(exprs, tg.Expr)
		}
		for _, c := range p.Panels {
			walk(c)
		}
	}
	for _, p := range dash.Panels {
		walk(p)
	}

	used := map[string]bool{}
	metricRe := regexp.MustCompile(`\b(litefs_[a-z0-9_]+)\b(\{[^}]*\})?`)
	matcherRe := regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"`)
	byRe := regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	varRe := regexp.MustCompile(`\$(\w+)|\$\{(\w+)\}`)
	for _, e := range exprs {
		for _, m := range metricRe.FindAllStringSubmatch(e, -1) {
			labels, ok := metrics[m[1]]
			if !ok {
				t.Errorf("%s: litefs does not export %s (../metrics.go)", e, m[1])
				continue
			}
			used[m[1]] = true
			for _, mm := range matcherRe.FindAllStringSubmatch(m[2], -1) {
				if !targetLabels[mm[1]] && !slices.Contains(labels, mm[1]) {
					t.Errorf("%s: %s has no label %s", e, m[1], mm[1])
				}
			}
		}
		for _, m := range byRe.FindAllStringSubmatch(e, -1) {
			for _, l := range strings.Split(m[1], ",") {
				if l = strings.TrimSpace(l); l != "" && !allLabels[l] && !targetLabels[l] {
					t.Errorf("%s: no litefs metric has the label %s", e, l)
				}
			}
		}
		for _, m := range varRe.FindAllStringSubmatch(e, -1) {
			name := m[1] + m[2]
			if !vars[name] && !strings.HasPrefix(name, "__") {
				t.Errorf("%s: no dashboard variable $%s", e, name)
			}
		}
	}
	for _, want := range []string{
		"litefs_db_txid", "litefs_replica_txid", "litefs_replica_lag_seconds", "litefs_staging_bytes",
		"litefs_upload_total", "litefs_fenced", "litefs_db_size_bytes", "litefs_wal_bytes",
	} {
		if !used[want] {
			t.Errorf("the dashboard has no panel for %s", want)
		}
	}
	byResult := false
	for _, e := range exprs {
		if strings.Contains(e, "litefs_upload_total") && regexp.MustCompile(`by\s*\([^)]*\bresult\b`).MatchString(e) {
			byResult = true
		}
	}
	if !byResult {
		t.Error("the dashboard has no upload rate by result")
	}
}
