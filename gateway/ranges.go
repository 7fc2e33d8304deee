package gateway

import (
	"errors"
	"strconv"
	"strings"
)

// byteRange is a part of a file: Length bytes from Start.
type byteRange struct {
	Start, Length int64
}

// errUnsatisfiable: the Range header asks for nothing inside the file
// (416).
var errUnsatisfiable = errors.New("range not satisfiable")

// parseRange reads a Range header for a file of size bytes. It answers
// whole (true) when the header is to be ignored and the whole file sent:
// absent, not in bytes, malformed, or asking for several ranges (which
// RFC 9110 lets a server answer with the whole file rather than a
// multipart body). Otherwise it answers the one range, clipped to the
// file, or errUnsatisfiable.
func parseRange(header string, size int64) (r byteRange, whole bool, err error) {
	spec, ok := strings.CutPrefix(header, "bytes=")
	if header == "" || !ok || strings.Contains(spec, ",") {
		return byteRange{}, true, nil
	}
	first, last, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return byteRange{}, true, nil
	}
	if first == "" {
		// A suffix: the last N bytes.
		n, err := strconv.ParseInt(last, 10, 64)
		if err != nil || n < 0 {
			return byteRange{}, true, nil
		}
		if n == 0 || size == 0 {
			return byteRange{}, false, errUnsatisfiable
		}
		n = min(n, size)
		return byteRange{Start: size - n, Length: n}, false, nil
	}
	start, err := strconv.ParseInt(first, 10, 64)
	if err != nil || start < 0 {
		return byteRange{}, true, nil
	}
	end := size - 1
	if last != "" {
		if end, err = strconv.ParseInt(last, 10, 64); err != nil || end < start {
			return byteRange{}, true, nil
		}
		end = min(end, size-1)
	}
	if start >= size {
		return byteRange{}, false, errUnsatisfiable
	}
	return byteRange{Start: start, Length: end - start + 1}, false, nil
}
