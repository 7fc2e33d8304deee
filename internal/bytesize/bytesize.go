// Package bytesize reads and writes byte counts for people: in flags and
// error messages (Parse, Format), and in listings and progress (Human).
//
// There are two ways of writing a size, on purpose. Format is exact: it
// writes what Parse reads back whenever a whole number of a unit fits,
// and otherwise adds the exact count, so that a size just over a limit in
// an error message reads as over it. Human is for columns of files and
// progress lines, where a rounded figure reads best.
package bytesize

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// units are the units Parse reads, as dd does: one letter or an IEC name
// is a power of 1024, an SI name a power of 1000.
var units = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
	"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
	"p": 1 << 50, "pib": 1 << 50, "pb": 1e15,
}

// Parse reads a byte count: digits and an optional unit, in any case,
// such as 4096, 512K, 10GiB (powers of 1024) or 500MB (powers of 1000).
func Parse(s string) (int64, error) {
	digits := strings.TrimSpace(s)
	i := 0
	for i < len(digits) && digits[i] >= '0' && digits[i] <= '9' {
		i++
	}
	unit, ok := units[strings.ToLower(strings.TrimSpace(digits[i:]))]
	if i == 0 || !ok {
		return 0, fmt.Errorf("size %q: want digits and an optional unit (B, K, KiB, KB, M, MiB, MB, G, GiB, GB, T, TiB, TB)", s)
	}
	n, err := strconv.ParseInt(digits[:i], 10, 64)
	if err != nil || n > math.MaxInt64/unit {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return n * unit, nil
}

// Format writes a byte count as Parse reads it when a whole number of an
// IEC unit fits (64GiB), else rounded to a tenth with the exact count
// (2.0MiB (2097153 bytes)), so that a size just over a limit reads as such.
func Format(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	i, div := 0, int64(1)
	for i < len(units)-1 && n/div >= 1024 {
		i, div = i+1, div*1024
	}
	if n%div == 0 {
		return strconv.FormatInt(n/div, 10) + units[i]
	}
	return fmt.Sprintf("%.1f%s (%d bytes)", float64(n)/float64(div), units[i], n)
}

// Human writes a byte count rounded to a tenth of an IEC unit, with a
// space (1.5 MiB), as listings and progress lines show sizes; below a KiB
// it writes the bytes (512 B).
func Human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
