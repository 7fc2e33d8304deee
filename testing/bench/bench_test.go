package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// TestHarness runs every phase with tiny sizes: the harness works end to
// end, every sample succeeds, and its results make a table and a chart.
// The figures of such a run mean nothing.
func TestHarness(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker and two file servers and moves files through them")
	}
	cfg := Config{Size: 16 << 20, Runs: 1, Retries: 1, SmallCount: 40, SmallSize: 4 << 10, SmallClients: 4, SmallDeletes: 20, TreeCount: 150,
		ListRepeat: 1, Clients: []int{2}, MixedSeconds: 0.5, Phases: allPhases, OpTimeout: 60, SettleWindow: 0.1, ScaleCounts: []int{5000}}
	res := measure(t, cfg, testLog{t}, nil)
	for _, s := range res.Samples {
		if !s.ok() {
			t.Errorf("%s %s %s run %d failed: %s", s.Phase, s.System, s.Op, s.Run, s.Err)
		}
	}
	for _, s := range res.pick("failover", "put", sysFTFS) {
		// A direct upload's chunks go into storage without the server
		// that opened it: its death must cost the upload nothing.
		if s.Killed == "" || s.Failovers != 0 || s.Resent != 0 {
			t.Errorf("failover put: killed %q, %d failovers, %d bytes re-sent: want the server killed mid-upload and the upload undisturbed", s.Killed, s.Failovers, s.Resent)
		}
	}
	var table bytes.Buffer
	writeTable(&table, res.Rows)
	for _, want := range []string{"put 16MiB (Go client)", "list 40 files", "peak RSS, ftfs CLI get", "put 16MiB, server killed halfway", "mixed work, 2 clients", "start reading every file, 5000 files: files index loaded", "start from its snapshot, 5000 files: files index loaded", "list 5000 files (ftfs ls)", "put -r 150×4KiB (ftfs CLI)"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("the table has no row %q:\n%s", want, table.String())
		}
	}
	path := filepath.Join(t.TempDir(), "bench.json")
	if err := res.save(path); err != nil {
		t.Fatal(err)
	}
	if err := renderChart(path, filepath.Join(t.TempDir(), "bench.svg")); err != nil {
		t.Fatal(err)
	}
}

// testLog writes the harness's progress lines to the test log.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
