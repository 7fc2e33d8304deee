package ftfstest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metrics are the metric families a file server serves on its
// --metrics-addr, by name, parsed as Prometheus parses them.
type Metrics map[string]*dto.MetricFamily

// Scrape fetches and parses a file server's /metrics at addr (HOST:PORT).
func Scrape(t testing.TB, addr string) Metrics {
	t.Helper()
	status, body := HTTPGet(t, "http://"+addr+"/metrics")
	if status != http.StatusOK {
		t.Fatalf("scrape %s: %d %s", addr, status, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse the metrics of %s: %v\n%s", addr, err, body)
	}
	return mfs
}

// Family is the family name, which must be there.
func (ms Metrics) Family(t testing.TB, name string) *dto.MetricFamily {
	t.Helper()
	mf, ok := ms[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
	return mf
}

// Sum adds the values of the counters and gauges of family name whose
// labels include labels (nil: all of them).
func (ms Metrics) Sum(name string, labels map[string]string) float64 {
	var n float64
	for _, m := range ms[name].GetMetric() {
		match := true
		for k, v := range labels {
			if Label(m, k) != v {
				match = false
			}
		}
		if match {
			n += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return n
}

// Label is the value of a metric's label name, "" when it has none.
func Label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// HTTPGet fetches url, with a deadline, and returns its status and body.
func HTTPGet(t testing.TB, url string) (int, string) {
	t.Helper()
	hc := http.Client{Timeout: 20 * time.Second}
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// WriteHealth is a file server's answer on /healthz/write, with its
// HTTP status.
type WriteHealth struct {
	Status   int    `json:"-"`
	Writable bool   `json:"writable"`
	Reason   string `json:"reason"`
	Brokers  struct {
		Seen   int `json:"seen"`
		Needed int `json:"needed"`
	} `json:"brokers"`
	Leaderless []string `json:"streams_without_leader"`
}

// CheckWrite asks the file server serving metrics on addr whether a write
// would succeed (/healthz/write).
func CheckWrite(t testing.TB, addr string) WriteHealth {
	t.Helper()
	var h WriteHealth
	status, body := HTTPGet(t, "http://"+addr+"/healthz/write")
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatalf("/healthz/write of %s: %d %q: %v", addr, status, body, err)
	}
	h.Status = status
	return h
}
