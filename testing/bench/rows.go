package main

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/ftfs/ftfs/subjects"
)

// The targets.
const (
	targetLarge     = 0.9       // ftfs put and get ÷ direct object store
	targetSFTP      = 1.0       // ftfs put and get ÷ sftp
	targetSmall     = 0.8       // small files put and get rates ÷ direct
	targetList      = 1.2       // listing time ÷ direct
	targetDelete    = 0.5       // small files delete rate ÷ direct
	targetMixed     = 0.8       // mixed work operations rate ÷ direct
	targetTree      = 2.0       // put -r rate ÷ direct, one by one
	targetTreeSFTP  = 5.0       // put -r rate ÷ sftp -r
	rssBound        = 100 << 20 // peak RSS of client and each server
	failoverGrace   = 1.0       // seconds a failover may add, besides re-sending
	failoverResends = subjects.UploadWindow * subjects.ChunkSize
)

// tabulate computes the table (and the latency table) from the samples.
func tabulate(res *Results) {
	res.Rows = rows(res)
	res.Latency = latencyRows(res)
}

// rows are the table of ratios, computed from the samples.
func rows(res *Results) []Row {
	var rows []Row
	add := func(r Row) {
		r.judge()
		rows = append(rows, r)
	}
	size := sizeText(res.Config.Size)
	sftpNote := ""
	for _, n := range res.Notes {
		if strings.HasPrefix(n, "sftp:") {
			sftpNote = n
		}
	}
	if res.Config.has("large") {
		for _, op := range []string{"put", "get"} {
			add(rateRow(res, op+" "+size+" (Go client)", "large", op, sysDirect, targetLarge))
			if op == "put" {
				rows = append(rows, failuresRow(res, "put "+size+": failed attempts"))
			}
		}
		for _, op := range []string{"put", "get"} {
			r := rateRow(res, op+" "+size+" (Go client) vs sftp", "large", op, sysSFTP, targetSFTP)
			if r.AltValue == 0 && sftpNote != "" {
				r.Note = sftpNote
			}
			add(r)
		}
	}
	if res.Config.has("cli") {
		for _, op := range []string{"put", "get"} {
			r := rateRow(res, op+" "+size+" (ftfs CLI)", "cli", op, sysDirect, 0)
			r.FTFS, r.FTFSRuns = medianRate(res.pick("cli", op, sysCLI))
			r.Ratio = ratio(r.FTFS, r.AltValue)
			add(r)
		}
		add(cliFileGetRow(res, size))
		add(cliCPURow(res, size))
	}
	if res.Config.has("cli") || res.Config.has("large") || res.Config.has("failover") {
		rows = append(rows, rssRows(res, size)...)
	}
	if res.Config.has("failover") {
		for _, op := range []string{"put", "get"} {
			add(failoverRow(res, op, size))
		}
	}
	if res.Config.has("small") {
		what := fmt.Sprintf("%d×%s, %d clients", res.Config.SmallCount, sizeText(res.Config.SmallSize), res.Config.SmallClients)
		add(rateRow(res, "small put ("+what+")", "small", "put", sysDirect, targetSmall))
		add(rateRow(res, "small get ("+what+")", "small", "get", sysDirect, targetSmall))
		add(timeRow(res, fmt.Sprintf("list %d files", res.Config.SmallCount), "small", "list", sysDirect, targetList))
		if n := min(res.Config.SmallDeletes, res.Config.SmallCount); n > 0 {
			add(rateRow(res, fmt.Sprintf("small delete (%d of the %d files, %d clients)", n, res.Config.SmallCount, res.Config.SmallClients), "small", "delete", sysDirect, targetDelete))
		}
	}
	if res.Config.has("tree") {
		what := fmt.Sprintf("put -r %d×%s (ftfs CLI)", res.Config.TreeCount, sizeText(res.Config.SmallSize))
		add(treeRow(res, what, sysDirect, targetTree))
		r := treeRow(res, what+" vs sftp -r", sysSFTP, targetTreeSFTP)
		if r.AltValue == 0 && sftpNote != "" {
			r.Note = sftpNote
		}
		add(r)
	}
	for _, n := range res.Config.Clients {
		if !res.Config.has("mixed") {
			break
		}
		add(mixedRow(res, n))
	}
	if res.Config.has("probe") {
		rows = append(rows, probeRows(res)...)
	}
	if res.Config.has("scale") {
		rows = append(rows, scaleRows(res)...)
	}
	return rows
}

// ratio is a ÷ b, 0 when either is missing.
func ratio(a, b float64) float64 {
	if a == 0 || b == 0 {
		return 0
	}
	return a / b
}

func medianRate(ss []Sample) (float64, string) {
	xs, runs := rates(ss)
	return median(xs), runs
}

// rateRow compares ftfs's median throughput with alt's.
func rateRow(res *Results, name, phase, op, alt string, target float64) Row {
	unit := "MB/s"
	if phase == "small" {
		unit = "files/s"
	}
	r := Row{Name: name, Unit: unit, Alt: alt, Higher: true, Target: target}
	r.FTFS, r.FTFSRuns = medianRate(res.pick(phase, op, sysFTFS))
	altPhase := phase
	if phase == "cli" {
		altPhase = "large" // the CLI is compared with the direct put of the large phase
	}
	r.AltValue, r.AltRuns = medianRate(res.pick(altPhase, op, alt))
	r.Ratio = ratio(r.FTFS, r.AltValue)
	if target != 0 {
		r.TargetText = fmt.Sprintf("≥ %.2g", target)
	}
	return r
}

// treeRow compares the rate of `ftfs put -r` with alt's putting the same
// tree: the object store one file after the other over one connection, or
// `sftp -r`.
func treeRow(res *Results, name, alt string, target float64) Row {
	r := Row{Name: name, Unit: "files/s", Alt: alt, Higher: true, Target: target, TargetText: fmt.Sprintf("≥ %.2g", target)}
	r.FTFS, r.FTFSRuns = medianRate(res.pick("tree", "put", sysCLI))
	r.AltValue, r.AltRuns = medianRate(res.pick("tree", "put", alt))
	r.Ratio = ratio(r.FTFS, r.AltValue)
	if alt == sysDirect {
		r.Note = "the object store puts the files one by one over one connection, as a loop of puts would"
		// Where ftfs's time goes: CPU per 1,000 files, medians.
		cpu := map[string][]float64{}
		for _, s := range res.pick("tree", "put", sysCLI) {
			for p, v := range s.CPU {
				if s.ok() && s.Files > 0 {
					cpu[p] = append(cpu[p], v*1000/float64(s.Files))
				}
			}
		}
		var parts []string
		for _, p := range []string{"cli", "primary", "backup", "broker1"} {
			if xs := cpu[p]; len(xs) > 0 {
				parts = append(parts, fmt.Sprintf("%s %.2f s", p, median(xs)))
			}
		}
		if len(parts) > 0 {
			r.Note += "; ftfs's CPU per 1,000 files: " + strings.Join(parts, ", ")
		}
		var rss int64
		for _, s := range res.pick("tree", "put", sysCLI) {
			rss = max(rss, s.RSS["cli"])
		}
		if rss > 0 {
			r.Note += "; the CLI's peak RSS " + mib(rss)
		}
	}
	return r
}

// timeRow compares ftfs's median time with alt's: lower is better.
func timeRow(res *Results, name, phase, op, alt string, target float64) Row {
	r := Row{Name: name, Unit: "s", Alt: alt, Target: target, TargetText: fmt.Sprintf("≤ %.2g", target)}
	xs, runs := seconds(res.pick(phase, op, sysFTFS))
	r.FTFS, r.FTFSRuns = median(xs), runs
	xs, runs = seconds(res.pick(phase, op, alt))
	r.AltValue, r.AltRuns = median(xs), runs
	r.Ratio = ratio(r.FTFS, r.AltValue)
	return r
}

// failuresRow counts the large puts that failed (and were tried again):
// ftfs must never fail where the direct put stalls.
func failuresRow(res *Results, name string) Row {
	count := func(system string) (int, string) {
		ss := res.pick("large", "put", system)
		n := 0
		var first string
		for _, s := range ss {
			if !s.ok() {
				n++
				if first == "" {
					first = s.Err
				}
			}
		}
		return n, first
	}
	f, ferr := count(sysFTFS)
	d, derr := count(sysDirect)
	met := f == 0
	r := Row{Name: name, Unit: "count", Counts: true, FTFS: float64(f), FTFSRuns: fmt.Sprint(len(res.pick("large", "put", sysFTFS))),
		Alt: sysDirect, AltValue: float64(d), AltRuns: fmt.Sprint(len(res.pick("large", "put", sysDirect))),
		TargetText: "ftfs: 0", Met: &met}
	var notes []string
	if ferr != "" {
		notes = append(notes, "ftfs: "+ferr)
	}
	if derr != "" {
		notes = append(notes, "objectstore: "+derr)
	}
	r.Note = strings.Join(notes, "; ")
	return r
}

// rssRows are the peak RSS of the CLI (its VmHWM, sampled by ftfstest)
// and of each file server: the highest of the VmRSS sampled during every
// large transfer and the VmHWM after the cli phase, which restarted them.
func rssRows(res *Results, size string) []Row {
	var rows []Row
	row := func(name string, peak int64, note string) {
		r := Row{Name: name, Unit: "MiB", FTFS: float64(peak) / (1 << 20), Alt: "bound", AltValue: rssBound >> 20,
			Target: 1, TargetText: "≤ 100 MiB", Note: note}
		r.Ratio = ratio(r.FTFS, r.AltValue)
		r.judge()
		rows = append(rows, r)
	}
	for _, op := range []string{"put", "get"} {
		var peak int64
		for _, s := range res.pick("cli", op, sysCLI) {
			peak = max(peak, s.RSS["cli"])
		}
		if peak > 0 {
			row(fmt.Sprintf("peak RSS, ftfs CLI %s %s", op, size), peak, "")
		}
	}
	for _, role := range []string{"primary", "backup"} {
		var sampled, hwm int64
		for _, s := range res.Samples {
			switch {
			case s.Op == "hwm":
				hwm = max(hwm, s.RSS[role])
			case s.Phase == "large" || s.Phase == "cli" || s.Phase == "failover":
				sampled = max(sampled, s.RSS[role])
			}
		}
		if sampled == 0 && hwm == 0 {
			continue
		}
		note := fmt.Sprintf("VmRSS sampled every 20 ms during the transfers: %s", mib(sampled))
		if hwm > 0 {
			note += fmt.Sprintf("; VmHWM of the cli phase (restarted before it): %s", mib(hwm))
		}
		row("peak RSS, "+role+" (transfers of "+size+")", max(sampled, hwm), note)
	}
	// The broker is no part of ftfs's bound: JetStream caches what it
	// stores and serves. Shown for whoever sizes a machine.
	var broker int64
	for _, s := range res.Samples {
		if s.Phase == "large" || s.Phase == "cli" || s.Phase == "failover" {
			broker = max(broker, s.RSS["broker1"])
		}
	}
	if broker > 0 {
		rows = append(rows, Row{Name: "peak RSS, broker (transfers of " + size + ")", Unit: "MiB", FTFS: float64(broker) / (1 << 20),
			Note: "VmRSS sampled every 20 ms; JetStream's caches, no target"})
	}
	return rows
}

// failoverRow compares a transfer with a kill with the undisturbed ones.
// The target: no more than failoverGrace more, plus the time to send
// again a few chunks (one upload window) at the undisturbed speed.
func failoverRow(res *Results, op, size string) Row {
	r := Row{Name: fmt.Sprintf("%s %s, server killed halfway", op, size), Unit: "s", Alt: "undisturbed"}
	killed := res.pick("failover", op, sysFTFS)
	xs, runs := seconds(killed)
	r.FTFS, r.FTFSRuns = median(xs), runs
	ys, yruns := seconds(res.pick("large", op, sysFTFS))
	r.AltValue, r.AltRuns = median(ys), yruns
	r.Ratio = ratio(r.FTFS, r.AltValue)
	if r.AltValue > 0 {
		resend := float64(failoverResends) / (float64(res.Config.Size) / r.AltValue)
		r.Target = (r.AltValue + failoverGrace + resend) / r.AltValue
		r.TargetText = fmt.Sprintf("≤ %.3f (+1 s +%s)", r.Target, sizeText(failoverResends))
	}
	var resent, resumed []float64
	victims := map[string]int{}
	var worst float64
	for _, s := range killed {
		if s.ok() {
			resent = append(resent, float64(s.Resent))
			victims[s.Killed]++
			worst = max(worst, s.Seconds)
			if s.ResumeSeconds > 0 {
				resumed = append(resumed, s.ResumeSeconds)
			}
		}
	}
	if len(resent) > 0 {
		var vs []string
		for v, n := range victims {
			vs = append(vs, fmt.Sprintf("%s ×%d", v, n))
		}
		sort.Strings(vs)
		r.Note = fmt.Sprintf("re-sent median %s (max %s); extra time median %.2fs, worst %.2fs; killed %s",
			mib(int64(median(resent))), mib(int64(slices.Max(resent))), r.FTFS-r.AltValue, worst-r.AltValue, strings.Join(vs, ", "))
		if len(resumed) > 0 {
			r.Note += fmt.Sprintf("; moving again %.2fs after the kill (median of %d; max %.2fs)", median(resumed), len(resumed), slices.Max(resumed))
		}
	}
	return r
}

// mixedRow compares the aggregate operation rate of n clients.
func mixedRow(res *Results, n int) Row {
	clients := "clients"
	if n == 1 {
		clients = "client"
	}
	r := Row{Name: fmt.Sprintf("mixed work, %d %s", n, clients), Unit: "ops/s", Alt: sysDirect, Higher: true,
		Target: targetMixed, TargetText: fmt.Sprintf("≥ %.2g", targetMixed)}
	var errs []string
	for _, system := range []string{sysFTFS, sysDirect} {
		var xs, mbs []float64
		runs, errors := 0, 0
		for _, m := range res.Mixed {
			if m.System == system && m.Clients == n {
				runs++
				errors += m.Errors
				xs = append(xs, m.opsPerSecond())
				mbs = append(mbs, float64(m.Bytes)/1e6/m.Seconds)
			}
		}
		if system == sysFTFS {
			r.FTFS, r.FTFSRuns = median(xs), fmt.Sprint(runs)
		} else {
			r.AltValue, r.AltRuns = median(xs), fmt.Sprint(runs)
		}
		errs = append(errs, fmt.Sprintf("%s %.1f MB/s, %d errors", system, median(mbs), errors))
	}
	r.Ratio = ratio(r.FTFS, r.AltValue)
	r.Note = strings.Join(errs, "; ")
	return r
}

// latencyRows pool every run's latencies by level and operation.
func latencyRows(res *Results) []LatencyRow {
	type key struct {
		n  int
		op string
	}
	lat := map[key]map[string][]float64{}
	var keys []key
	for _, m := range res.Mixed {
		for op, xs := range m.LatencyMS {
			k := key{m.Clients, op}
			if lat[k] == nil {
				lat[k] = map[string][]float64{}
				keys = append(keys, k)
			}
			lat[k][m.System] = append(lat[k][m.System], xs...)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].n != keys[j].n {
			return keys[i].n < keys[j].n
		}
		return keys[i].op < keys[j].op
	})
	var rows []LatencyRow
	for _, k := range keys {
		f, d := lat[k][sysFTFS], lat[k][sysDirect]
		rows = append(rows, LatencyRow{Clients: k.n, Op: k.op,
			FTFSN: len(f), FTFSP50: percentile(f, 50), FTFSP99: percentile(f, 99),
			AltN: len(d), AltP50: percentile(d, 50), AltP99: percentile(d, 99)})
	}
	return rows
}

// probeRows compare JetStream storing 512 KiB chunks one at a time (as
// the ftfs server did), relayed that way, and relayed 8 at a time behind
// fences (as it does), with the chunks published straight, 8 in flight.
func probeRows(res *Results) []Row {
	window := res.pick("probe", "publish", probeWindow)
	var rows []Row
	for _, system := range []string{probeOne, probeRelay, probeRelayWindow} {
		r := Row{Name: "probe: JetStream stores " + sizeText(subjects.ChunkSize) + " chunks one at a time", Unit: "MB/s",
			Alt: fmt.Sprintf("%d in flight", subjects.UploadWindow), Higher: true}
		switch system {
		case probeRelay:
			r.Name += ", relayed"
		case probeRelayWindow:
			r.Name = fmt.Sprintf("probe: JetStream stores %s chunks %d at a time behind fences, relayed as ftfs does", sizeText(subjects.ChunkSize), subjects.UploadWindow)
		}
		r.FTFS, r.FTFSRuns = medianRate(res.pick("probe", "publish", system))
		r.AltValue, r.AltRuns = medianRate(window)
		r.Ratio = ratio(r.FTFS, r.AltValue)
		var ms []float64
		for _, s := range res.pick("probe", "publish", system) {
			ms = append(ms, s.StepMS...)
		}
		if len(ms) > 0 {
			r.Note = fmt.Sprintf("a chunk is stored every %.2f ms (median; p99 %.2f ms) over %d chunks", median(ms), percentile(ms, 99), len(ms))
		}
		rows = append(rows, r)
	}
	for _, size := range putStepSizes {
		var commit, open, chunks []float64
		for _, s := range res.Samples {
			if s.Phase == "probe" && s.Bytes == size {
				switch s.Op {
				case "put-open":
					open = s.StepMS
				case "put-chunks":
					chunks = s.StepMS
				case "put-commit":
					commit = s.StepMS
				}
			}
		}
		if len(commit) == 0 {
			continue
		}
		rows = append(rows, Row{Name: "probe: commit of a " + stepSize(size) + " upload", Unit: "ms", FTFS: median(commit), FTFSRuns: fmt.Sprint(len(commit)),
			Note: fmt.Sprintf("open %.1f ms, chunks %.1f ms, commit %.1f ms (medians; p99 of commit %.1f ms)", median(open), median(chunks), median(commit), percentile(commit, 99))})
	}
	r := rateRow(res, fmt.Sprintf("probe: ftfs download, %d-chunk batches at the wire", subjects.DownloadBatch), "probe", "download", sysDirect, 0)
	r.FTFS, r.FTFSRuns = medianRate(res.pick("probe", "download", probeBatches))
	r.AltValue, r.AltRuns = medianRate(res.pick("large", "get", sysDirect))
	r.Alt += " get"
	r.Ratio = ratio(r.FTFS, r.AltValue)
	var waits []float64
	var waited, total float64
	for _, s := range res.pick("probe", "download", probeBatches) {
		if s.ok() {
			waits = append(waits, s.StepMS...)
			total += s.Seconds
			for _, w := range s.StepMS {
				waited += w / 1000
			}
		}
	}
	if total > 0 {
		r.Note = fmt.Sprintf("each batch waits %.2f ms (median; p99 %.2f ms) for its first chunk: %.0f%% of the download's time", median(waits), percentile(waits, 99), 100*waited/total)
	}
	return append(rows, r)
}

// cliFileGetRow compares `ftfs get` to a file with `nats object get` of
// the same object to a file, both run as commands.
func cliFileGetRow(res *Results, size string) Row {
	r := Row{Name: "get " + size + " to a file (ftfs CLI) vs nats object get", Unit: "MB/s", Alt: sysNATSCLI, Higher: true, Target: 1, TargetText: "≥ 1"}
	r.FTFS, r.FTFSRuns = medianRate(res.pick("cli", "get-file", sysCLI))
	r.AltValue, r.AltRuns = medianRate(res.pick("cli", "get-file", sysNATSCLI))
	r.Ratio = ratio(r.FTFS, r.AltValue)
	if r.AltValue == 0 {
		r.Note = "no NATS CLI installed"
	}
	return r
}

// cliCPURow compares the CPU time per GiB the two commands of
// cliFileGetRow took: lower is better.
func cliCPURow(res *Results, size string) Row {
	perGiB := func(ss []Sample) ([]float64, string) {
		var xs []float64
		for _, s := range ss {
			if s.ok() && s.Bytes > 0 && s.CPU != nil {
				xs = append(xs, s.CPU["cli"]/(float64(s.Bytes)/(1<<30)))
			}
		}
		return xs, fmt.Sprintf("%d/%d", len(xs), len(ss))
	}
	r := Row{Name: "CPU per GiB, get " + size + " to a file (ftfs CLI vs NATS CLI)", Unit: "s", Alt: sysNATSCLI, Target: 1, TargetText: "≤ 1"}
	xs, runs := perGiB(res.pick("cli", "get-file", sysCLI))
	r.FTFS, r.FTFSRuns = median(xs), runs
	xs, runs = perGiB(res.pick("cli", "get-file", sysNATSCLI))
	r.AltValue, r.AltRuns = median(xs), runs
	r.Ratio = ratio(r.FTFS, r.AltValue)
	return r
}
