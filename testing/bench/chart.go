package main

import (
	"bytes"
	"fmt"
	"html"
	"math"
	"os"
	"strings"
)

// Chart geometry, in SVG user units.
const (
	chartWidth  = 1040
	chartLabel  = 450 // width of the label column
	chartRight  = 70  // room for values past the end of the axis
	chartRow    = 26
	chartTop    = 84
	chartBottom = 56
	chartMaxX   = 3.0 // the axis ends here; longer bars are cut, and say so
)

// renderChart draws the ratio of every row that has one (but the probes),
// as horizontal bars against their targets, from results saved by a run.
func renderChart(in, out string) error {
	res, err := loadResults(in)
	if err != nil {
		return err
	}
	tabulate(res) // from the samples, as this version of the harness reads them
	svg := chartSVG(res)
	if svg == nil {
		return fmt.Errorf("%s: no row has a ratio to draw", in)
	}
	return os.WriteFile(out, svg, 0o644)
}

func chartSVG(res *Results) []byte {
	var rows []Row
	for _, r := range res.Rows {
		// The probes explain the figures; they are not ftfs's own.
		if r.Ratio > 0 && !strings.HasPrefix(r.Name, "probe:") {
			rows = append(rows, r)
		}
	}
	if len(rows) == 0 {
		return nil
	}
	top := 2.0
	for _, r := range rows {
		top = math.Max(top, math.Max(r.Ratio, r.Target))
	}
	top = math.Min(math.Ceil(top*2)/2, chartMaxX)
	axis := float64(chartWidth - chartLabel - chartRight)
	x := func(v float64) float64 { return chartLabel + axis*math.Min(v, top)/top }
	height := chartTop + chartRow*len(rows) + chartBottom

	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", chartWidth, height, chartWidth, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="10" y="22" font-size="15" font-weight="bold">ftfs ÷ alternative, measured in the same run (medians of %d)</text>`+"\n", res.Config.Runs)
	fmt.Fprintf(&b, `<text x="10" y="42" fill="#555">%s, %d CPUs; other processes used %.2f cores (median) meanwhile.</text>`+"\n",
		res.Started.Format("2006-01-02"), res.Host.CPUs, median(res.Host.OtherCores))
	fmt.Fprintf(&b, `<text x="10" y="60" fill="#555">↑ higher is better, ↓ lower is better. Black tick: the target; green: met, red: not met, grey: no target.</text>`+"\n")
	// Grid: every half unit, 1.0 (parity) stronger.
	bottom := chartTop + chartRow*len(rows)
	for v := 0.0; v <= top+1e-9; v += 0.5 {
		stroke, width := "#ddd", 1
		if v == 1 {
			stroke, width = "#888", 1
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="%d"/>`+"\n", x(v), chartTop-6, x(v), bottom, stroke, width)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#555">%.1f</text>`+"\n", x(v), bottom+16, v)
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#555">ratio (ftfs ÷ alternative; peak RSS ÷ 100 MiB; time with a kill ÷ undisturbed)</text>`+"\n", x(top/2), bottom+36)
	for i, r := range rows {
		y := chartTop + chartRow*i
		arrow := "↓"
		if r.Higher {
			arrow = "↑"
		}
		label := fmt.Sprintf("%s %s ÷ %s", arrow, r.Name, r.Alt)
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", chartLabel-8, y+15, html.EscapeString(label))
		color := "#9e9e9e"
		if r.Met != nil {
			color = map[bool]string{true: "#2e7d32", false: "#c62828"}[*r.Met]
		}
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", chartLabel, y+4, x(r.Ratio)-chartLabel, chartRow-8, color)
		value := fmt.Sprintf("%.2f", r.Ratio)
		if r.Ratio > top {
			value += " →" // cut at the end of the axis
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s</text>`+"\n", x(r.Ratio)+4, y+15, value)
		if r.Target > 0 {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="black" stroke-width="3"/>`+"\n", x(r.Target), y+1, x(r.Target), y+chartRow-1)
		}
		if r.Target > top {
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="end" fill="#555">target %.2f →</text>`+"\n", x(top)-4, y+15, r.Target)
		}
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}
