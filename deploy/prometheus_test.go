package deploy

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ayrbridge/ayrbridge/internal/proctest"
)

// promtoolVersion pins the Prometheus module whose promtool checks deploy/prometheus (v0.316.0 is
// Prometheus 3.16); the Go build cache makes every build after the first a matter of seconds.
const promtoolVersion = "v0.316.0"

// TestPromtool runs promtool on deploy/prometheus: the rules load, their unit tests in
// alerts_test.yaml pass, and prometheus.yml is a valid configuration (which needs no cluster to
// check). It skips where promtool cannot be built.
func TestPromtool(t *testing.T) {
	proctest.SkipShort(t, "builds promtool, about 6 minutes with a cold Go build cache")
	promtool := buildPromtool(t)
	for _, args := range [][]string{
		{"check", "rules", "alerts.yaml"},
		{"test", "rules", "alerts_test.yaml"},
		{"check", "config", "prometheus.yml"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, promtool, args...)
			cmd.Dir = "prometheus"
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		})
	}
}

// buildPromtool installs promtool into a temporary directory and returns its path, or skips t
// when go is missing or the build fails (no module proxy, say), with the end of the build's output.
func buildPromtool(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command to build promtool with (%v): deploy/prometheus is checked only statically", err)
	}
	timeout := 10 * time.Minute
	if deadline, ok := t.Deadline(); ok {
		// Skipping beats being killed by go test's -timeout, which would report nothing useful.
		timeout = min(timeout, time.Until(deadline)-30*time.Second)
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	dir := t.TempDir()
	pkg := "github.com/prometheus/prometheus/cmd/promtool@" + promtoolVersion
	cmd := exec.CommandContext(ctx, gobin, "install", pkg)
	cmd.Dir = dir // outside this module: pkg@version builds with promtool's own go.mod
	cmd.Env = append(os.Environ(), "GOBIN="+dir)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		const keep = 3000
		if len(out) > keep {
			out = append([]byte("..."), out[len(out)-keep:]...)
		}
		t.Skipf("go install %s failed after %s (%v), so promtool cannot check deploy/prometheus; output:\n%s",
			pkg, time.Since(start).Round(time.Second), err, out)
	}
	t.Logf("go install %s: %s", pkg, time.Since(start).Round(100*time.Millisecond))
	name := "promtool"
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	return filepath.Join(dir, name)
}

// ruleFile is a Prometheus rule file, decoded strictly so that a misspelt key is reported.
type ruleFile struct {
	Groups []ruleGroup `yaml:"groups"`
}

type ruleGroup struct {
	Name     string `yaml:"name"`
	Interval string `yaml:"interval"`
	Rules    []rule `yaml:"rules"`
}

type rule struct {
	Alert         string            `yaml:"alert"`
	Record        string            `yaml:"record"`
	Expr          string            `yaml:"expr"`
	For           string            `yaml:"for"`
	KeepFiringFor string            `yaml:"keep_firing_for"`
	Labels        map[string]string `yaml:"labels"`
	Annotations   map[string]string `yaml:"annotations"`
}

// ruleTestFile is a promtool test file (promtool test rules).
type ruleTestFile struct {
	RuleFiles          []string   `yaml:"rule_files"`
	EvaluationInterval string     `yaml:"evaluation_interval"`
	GroupEvalOrder     []string   `yaml:"group_eval_order"`
	Tests              []ruleTest `yaml:"tests"`
}

type ruleTest struct {
	Name           string            `yaml:"name"`
	Interval       string            `yaml:"interval"`
	ExternalLabels map[string]string `yaml:"external_labels"`
	InputSeries    []struct {
		Series string `yaml:"series"`
		Values string `yaml:"values"`
	} `yaml:"input_series"`
	AlertRuleTests []alertRuleTest `yaml:"alert_rule_test"`
	PromQLExprTest []struct {
		Expr       string `yaml:"expr"`
		EvalTime   string `yaml:"eval_time"`
		ExpSamples []struct {
			Labels string  `yaml:"labels"`
			Value  float64 `yaml:"value"`
		} `yaml:"exp_samples"`
	} `yaml:"promql_expr_test"`
}

type alertRuleTest struct {
	EvalTime  string `yaml:"eval_time"`
	Alertname string `yaml:"alertname"`
	ExpAlerts []struct {
		ExpLabels      map[string]string `yaml:"exp_labels"`
		ExpAnnotations map[string]string `yaml:"exp_annotations"`
	} `yaml:"exp_alerts"`
}

// promConfig is the part of a Prometheus configuration the checks read; other keys are refused, as
// in compose.yaml, so that one the checks cannot see is a conscious change to them.
type promConfig struct {
	Global struct {
		ScrapeInterval     string `yaml:"scrape_interval"`
		EvaluationInterval string `yaml:"evaluation_interval"`
	} `yaml:"global"`
	RuleFiles     []string       `yaml:"rule_files"`
	ScrapeConfigs []scrapeConfig `yaml:"scrape_configs"`
}

type scrapeConfig struct {
	JobName             string         `yaml:"job_name"`
	HonorLabels         bool           `yaml:"honor_labels"`
	MetricsPath         string         `yaml:"metrics_path"`
	KubernetesSDConfigs []kubernetesSD `yaml:"kubernetes_sd_configs"`
	StaticConfigs       []struct {
		Targets []string          `yaml:"targets"`
		Labels  map[string]string `yaml:"labels"`
	} `yaml:"static_configs"`
	RelabelConfigs []relabelConfig `yaml:"relabel_configs"`
}

type kubernetesSD struct {
	Role string `yaml:"role"`
}

type relabelConfig struct {
	SourceLabels []string `yaml:"source_labels"`
	Separator    *string  `yaml:"separator"`
	Regex        *string  `yaml:"regex"`
	TargetLabel  string   `yaml:"target_label"`
	Replacement  string   `yaml:"replacement"`
	Action       string   `yaml:"action"`
}

// keeps reports whether the job's relabelling keeps a pod target with these labels (meta labels
// such as __meta_kubernetes_pod_label_...). Only keep and drop rules are applied: the others
// rewrite target labels, which the shipped configuration does after its keep rule.
func (sc scrapeConfig) keeps(labels map[string]string) bool {
	if !slices.Contains(sc.KubernetesSDConfigs, kubernetesSD{Role: "pod"}) {
		return false
	}
	for _, rc := range sc.RelabelConfigs {
		if rc.Action != "keep" && rc.Action != "drop" {
			continue
		}
		sep, re := ";", "(.*)"
		if rc.Separator != nil {
			sep = *rc.Separator
		}
		if rc.Regex != nil {
			re = *rc.Regex
		}
		values := make([]string, len(rc.SourceLabels))
		for i, l := range rc.SourceLabels {
			values[i] = labels[l]
		}
		// Prometheus anchors relabel regexes at both ends.
		matched, err := regexp.MatchString("^(?:"+re+")$", strings.Join(values, sep))
		if err != nil || matched != (rc.Action == "keep") {
			return false
		}
	}
	return true
}

// podMetaLabels are the __meta_kubernetes_pod_* labels Prometheus's pod discovery gives a pod.
func podMetaLabels(pd pod) map[string]string {
	sanitize := regexp.MustCompile(`[^a-zA-Z0-9_]`)
	out := map[string]string{}
	for k, v := range pd.meta.Labels {
		out["__meta_kubernetes_pod_label_"+sanitize.ReplaceAllString(k, "_")] = v
	}
	for k, v := range pd.meta.Annotations {
		out["__meta_kubernetes_pod_annotation_"+sanitize.ReplaceAllString(k, "_")] = v
	}
	return out
}

var (
	promqlStrings  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promqlBraces   = regexp.MustCompile(`\{[^}]*\}`)
	promqlRanges   = regexp.MustCompile(`\[[^\]]*\]`)
	promqlGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promqlIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	promqlKeywords = []string{"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "atan2", "inf", "nan"}
)

// promqlMetrics returns the metric names a PromQL expression selects, in order of appearance:
// its identifiers, less function names (followed by a parenthesis), keywords, label names
// (inside braces or grouping lists), and what strings, ranges and durations hold. It is a
// lexer, not a parser, which is enough for the rules this repository writes.
func promqlMetrics(expr string) []string {
	s := promqlStrings.ReplaceAllString(expr, `""`)
	s = promqlBraces.ReplaceAllString(s, " ")
	s = promqlRanges.ReplaceAllString(s, " ")
	s = promqlGrouping.ReplaceAllString(s, " ")
	var out []string
	for _, loc := range promqlIdent.FindAllStringIndex(s, -1) {
		name := s[loc[0]:loc[1]]
		inNumber := loc[0] > 0 && strings.ContainsRune("0123456789.", rune(s[loc[0]-1])) // 1h, 1e3
		call := strings.HasPrefix(strings.TrimLeft(s[loc[1]:], " \t\n"), "(")
		if inNumber || call || slices.Contains(promqlKeywords, strings.ToLower(name)) || slices.Contains(out, name) {
			continue
		}
		out = append(out, name)
	}
	return out
}

func TestPromQLMetrics(t *testing.T) {
	tests := map[string]struct {
		expr string
		want []string
	}{
		"selector":  {`up{job="ayrbridge"} == 0`, []string{"up"}},
		"functions": {`absent(up{job="a"} == 1) and vector(0)`, []string{"up"}},
		"grouping": {
			`sum by (job, instance) (rate(a_total{code=~"5.."}[5m])) / on (job) group_left (x) sum without (code) (b_total)`,
			[]string{"a_total", "b_total"}},
		"offset and durations": {`a_total > 0 unless sum(a_total offset 1h) and time() - b > 6 * 3600`, []string{"a_total", "b"}},
		"label values":         {`c{reason="sum by (x) rate"} > 0.05`, []string{"c"}},
		"recording rule names": {`ayrbridge:ratio:rate5m > bool 1e3`, []string{"ayrbridge:ratio:rate5m"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := promqlMetrics(tt.expr); !slices.Equal(got, tt.want) {
				t.Errorf("promqlMetrics(%q) = %q, want %q", tt.expr, got, tt.want)
			}
		})
	}
}

func TestScrapeConfigKeeps(t *testing.T) {
	re := func(s string) *string { return &s }
	sc := scrapeConfig{
		KubernetesSDConfigs: []kubernetesSD{{Role: "pod"}},
		RelabelConfigs: []relabelConfig{
			{SourceLabels: []string{"a", "b"}, Regex: re("true;(x|y)"), Action: "keep"},
			{SourceLabels: []string{"c"}, Regex: re("no"), Action: "drop"},
			{SourceLabels: []string{"c"}, TargetLabel: "c2"},
		},
	}
	for _, tt := range []struct {
		labels map[string]string
		want   bool
	}{
		{map[string]string{"a": "true", "b": "x"}, true},
		{map[string]string{"a": "true", "b": "xy"}, false}, // anchored
		{map[string]string{"a": "true", "b": "y", "c": "no"}, false},
		{map[string]string{"b": "x"}, false},
	} {
		if got := sc.keeps(tt.labels); got != tt.want {
			t.Errorf("keeps(%v) = %v, want %v", tt.labels, got, tt.want)
		}
	}
}
