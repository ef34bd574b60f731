// Package metricstest reads what a program serves at /metrics, for tests and benchmarks.
package metricstest

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Scrape returns the samples at url (a /metrics URL) keyed as the exposition format writes
// them, name{label="value",...}; a histogram gives name_count. Without a deadline in ctx it
// waits at most 5s.
func Scrape(ctx context.Context, url string) (map[string]float64, error) {
	return ScrapeWith(ctx, http.DefaultClient, url)
}

// ScrapeWith is Scrape through c, for a bridge serving HTTPS with a test CA.
func ScrapeWith(ctx context.Context, c *http.Client, url string) (map[string]float64, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	res, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, res.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(res.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := name
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[key] = m.GetGauge().GetValue()
			case m.GetUntyped() != nil:
				out[key] = m.GetUntyped().GetValue()
			case m.GetHistogram() != nil:
				out[key+"_count"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out, nil
}

// Sum adds the samples of family over its labels.
func Sum(samples map[string]float64, family string) float64 {
	total := 0.0
	for k, v := range samples {
		if k == family || strings.HasPrefix(k, family+"{") {
			total += v
		}
	}
	return total
}

// suffixes of a histogram's series, which belong to its family.
var histogramSeries = regexp.MustCompile(`_(bucket|sum|count)$`)

// Families returns the sorted, distinct metric families that re finds in text: its first
// group is a metric name, and a histogram's _bucket, _sum and _count name their family.
func Families(text []byte, re *regexp.Regexp) []string {
	var out []string
	for _, m := range re.FindAllSubmatch(text, -1) {
		name := histogramSeries.ReplaceAllString(string(m[1]), "")
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}
