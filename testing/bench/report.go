package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/ftfs/ftfs/internal/bytesize"
)

// Results are everything one run of the harness measured: every raw
// sample, and the table computed from them. The chart mode reads them back.
type Results struct {
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Host     Host      `json:"host"`
	Config   Config    `json:"config"`
	Samples  []Sample  `json:"samples"`
	Mixed    []Mixed   `json:"mixed,omitempty"`
	// Rows is the table of ratios (ftfs ÷ alternative, medians of this run).
	Rows []Row `json:"rows"`
	// Latency is the concurrency phase's latency table.
	Latency []LatencyRow `json:"latency,omitempty"`
	// Census is the probe's count of messages per operation.
	Census []Census `json:"census,omitempty"`
	Notes  []string `json:"notes,omitempty"`
}

// Host describes the machine the figures come from.
type Host struct {
	CPUs      int     `json:"cpus"`
	GoVersion string  `json:"go"`
	Load      float64 `json:"load_at_start"` // 1-minute load average
	LoadEnd   float64 `json:"load_at_end"`
	// OtherCores are, second by second, the CPU cores that processes
	// other than the harness, its broker and its file servers used.
	OtherCores []float64 `json:"other_cores"`
}

// Sample is one timed operation (or batch of operations) of one system.
type Sample struct {
	Phase   string  `json:"phase"` // large, cli, failover, small
	Op      string  `json:"op"`    // put, get, list, delete
	System  string  `json:"system"`
	Run     int     `json:"run"`
	Attempt int     `json:"attempt,omitempty"` // direct puts are retried
	Clients int     `json:"clients,omitempty"`
	Bytes   int64   `json:"bytes,omitempty"`
	Files   int     `json:"files,omitempty"` // files moved or listed
	Seconds float64 `json:"seconds"`
	Err     string  `json:"error,omitempty"`
	// Failover phase: what was killed when, and what it cost.
	Killed   string  `json:"killed,omitempty"`
	KilledAt float64 `json:"killed_at,omitempty"` // seconds into the operation
	// KillSeconds is how long the kill took (SIGKILL until the process
	// was reaped), on the transfer's goroutine: part of Seconds.
	KillSeconds float64 `json:"kill_seconds,omitempty"`
	// ResumeSeconds is the time from the kill to the first progress after
	// the failover (the transfer moving again); 0 without a failover.
	ResumeSeconds float64 `json:"resume_seconds,omitempty"`
	Failovers     int     `json:"failovers,omitempty"`
	Resent        int64   `json:"resent,omitempty"`
	// StepMS are the probe's steps, in milliseconds: for chunks stored one
	// at a time, each one's store; for the download, each batch's wait
	// for its first chunk.
	StepMS []float64 `json:"step_ms,omitempty"`
	// RSS is the peak resident set size, bytes, of each process during
	// the operation: "cli" from its VmHWM, servers sampled (VmRSS).
	RSS map[string]int64 `json:"rss,omitempty"`

	// Bucket is how many files the bucket held (scale phase).
	Bucket int `json:"bucket_files,omitempty"`
	// CPU is the CPU time, in seconds, processes took during the
	// operation: the scale phase's start, the tree phase's "cli", broker
	// and file servers, the cli phase's "cli".
	CPU map[string]float64 `json:"cpu_seconds,omitempty"`
}

func (s Sample) ok() bool { return s.Err == "" }

// rate is the sample's throughput: MB/s (10^6 bytes) for transfers,
// files per second for batches of files.
func (s Sample) rate() float64 {
	if s.Seconds <= 0 {
		return 0
	}
	if s.Files > 0 {
		return float64(s.Files) / s.Seconds
	}
	return float64(s.Bytes) / 1e6 / s.Seconds
}

// Row is one line of the table: a median of ftfs against the same
// measurement of an alternative, and the target for their ratio.
type Row struct {
	Name     string  `json:"name"`
	Unit     string  `json:"unit"`
	FTFS     float64 `json:"ftfs"`
	FTFSRuns string  `json:"ftfs_runs"` // successful of attempted
	Alt      string  `json:"alt"`
	AltValue float64 `json:"alt_value"`
	AltRuns  string  `json:"alt_runs"`
	// Ratio is FTFS ÷ AltValue; 0 when there is no alternative figure.
	Ratio float64 `json:"ratio"`
	// Higher says whether a higher ratio is better.
	Higher bool `json:"higher"`
	// Target is the ratio the issue asks for; 0 when there is none.
	Target     float64 `json:"target,omitempty"`
	TargetText string  `json:"target_text,omitempty"`
	Met        *bool   `json:"met,omitempty"`
	Note       string  `json:"note,omitempty"`
	// Counts rows hold counts, not medians: zero is a value.
	Counts bool `json:"counts,omitempty"`
}

// values are the row's ftfs and alternative figures as printed.
func (r Row) values() (ftfs, alt string) {
	if r.Counts {
		return fmt.Sprint(r.FTFS), fmt.Sprint(r.AltValue)
	}
	ftfs, alt = "-", "-"
	if r.FTFS != 0 {
		ftfs = formatValue(r.FTFS)
	}
	if r.AltValue != 0 {
		alt = formatValue(r.AltValue)
	}
	return ftfs, alt
}

// ratioText is the ratio as printed: two decimals, three when two would
// not tell it from its target or from zero.
func (r Row) ratioText() string {
	if r.Ratio == 0 {
		return "-"
	}
	if t := fmt.Sprintf("%.2f", r.Ratio); r.Ratio >= 0.1 && (r.Target == 0 || t != fmt.Sprintf("%.2f", r.Target)) {
		return t
	}
	return fmt.Sprintf("%.3f", r.Ratio)
}

// verdict is "met", "NOT MET", "n/a" (a target but no figure) or "-".
func (r Row) verdict() string {
	switch {
	case r.Met != nil && *r.Met:
		return "met"
	case r.Met != nil:
		return "NOT MET"
	case r.TargetText != "":
		return "n/a"
	}
	return "-"
}

// judge sets Met from the ratio and the target.
func (r *Row) judge() {
	if r.Target == 0 || r.Ratio == 0 {
		return
	}
	met := r.Ratio >= r.Target
	if !r.Higher {
		met = r.Ratio <= r.Target
	}
	r.Met = &met
}

// LatencyRow is one operation's latency at one concurrency level.
type LatencyRow struct {
	Clients int     `json:"clients"`
	Op      string  `json:"op"`
	FTFSN   int     `json:"ftfs_n"`
	FTFSP50 float64 `json:"ftfs_p50_ms"`
	FTFSP99 float64 `json:"ftfs_p99_ms"`
	AltN    int     `json:"alt_n"`
	AltP50  float64 `json:"alt_p50_ms"`
	AltP99  float64 `json:"alt_p99_ms"`
}

// median of xs; 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// percentile of xs by the nearest-rank method; 0 for none.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(len(s)-1, i))]
}

// pick returns the samples of one phase, operation and system.
func (res *Results) pick(phase, op, system string) []Sample {
	var out []Sample
	for _, s := range res.Samples {
		if s.Phase == phase && s.Op == op && s.System == system {
			out = append(out, s)
		}
	}
	return out
}

// rates are the throughputs of the successful samples, and a "3/4"
// count of successful attempts.
func rates(ss []Sample) ([]float64, string) {
	var xs []float64
	for _, s := range ss {
		if s.ok() {
			xs = append(xs, s.rate())
		}
	}
	return xs, fmt.Sprintf("%d/%d", len(xs), len(ss))
}

// seconds are the durations of the successful samples.
func seconds(ss []Sample) ([]float64, string) {
	var xs []float64
	for _, s := range ss {
		if s.ok() {
			xs = append(xs, s.Seconds)
		}
	}
	return xs, fmt.Sprintf("%d/%d", len(xs), len(ss))
}

// writeTable prints the table of ratios.
func writeTable(w io.Writer, rows []Row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "operation\tunit\tftfs median\tn\talternative\talt median\tn\tratio\ttarget\tmet?")
	for _, r := range rows {
		ftfs, alt := r.values()
		ratio := r.ratioText()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Unit, ftfs, r.FTFSRuns, r.Alt, alt, r.AltRuns, ratio, r.TargetText, r.verdict())
	}
	tw.Flush()
	for _, r := range rows {
		if r.Note != "" {
			fmt.Fprintf(w, "  %s: %s\n", r.Name, r.Note)
		}
	}
}

// writeMarkdown prints the table of ratios as Markdown, for the README.
func writeMarkdown(w io.Writer, rows []Row) {
	fmt.Fprintln(w, "| operation | ftfs median | alternative (median) | ratio | target | met? |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, r := range rows {
		ftfs, alt := r.values()
		ratio, target, met := r.ratioText(), "–", r.verdict()
		if r.TargetText != "" {
			target = r.TargetText
		}
		if met == "NOT MET" {
			met = "**not met**"
		}
		unit := " " + r.Unit
		if r.Counts {
			unit = ""
		}
		altCell := "–"
		switch {
		case r.Alt != "" && (r.AltValue != 0 || r.Counts):
			altCell = r.Alt + " " + alt + unit
		case r.Alt != "":
			altCell = r.Alt + ": none"
		}
		fmt.Fprintf(w, "| %s | %s%s | %s | %s | %s | %s |\n", r.Name, ftfs, unit, altCell, ratio, target, met)
	}
}

// writeLatencyMarkdown prints the concurrency phase's latencies as
// Markdown, for the README.
func writeLatencyMarkdown(w io.Writer, rows []LatencyRow) {
	if len(rows) == 0 {
		return
	}
	fmt.Fprintln(w, "| clients | operation | ftfs p50 / p99 ms | objectstore p50 / p99 ms | ftfs n | objectstore n |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %d | %s | %.1f / %.1f | %.1f / %.1f | %d | %d |\n", r.Clients, r.Op, r.FTFSP50, r.FTFSP99, r.AltP50, r.AltP99, r.FTFSN, r.AltN)
	}
}

// writeLatency prints the concurrency phase's latencies.
func writeLatency(w io.Writer, rows []LatencyRow) {
	if len(rows) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "clients\toperation\tftfs n\tftfs p50 ms\tftfs p99 ms\tobjectstore n\tobjectstore p50 ms\tobjectstore p99 ms")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%.1f\t%.1f\t%d\t%.1f\t%.1f\n", r.Clients, r.Op, r.FTFSN, r.FTFSP50, r.FTFSP99, r.AltN, r.AltP50, r.AltP99)
	}
	tw.Flush()
}

func formatValue(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

// save writes the results as JSON, on one line: tens of thousands of
// latencies, one per line, would make it twice the size.
func (res *Results) save(path string) error {
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// loadResults reads results saved by a run.
func loadResults(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var res Results
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &res, nil
}

// mib formats bytes as MiB.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// sizeText formats a size as the flags take it: 1GiB, 4KiB.
func sizeText(n int64) string { return bytesize.Format(n) }
