package gateway

import (
	"errors"
	"testing"
)

func TestParseRange(t *testing.T) {
	const size = 1000
	for _, tc := range []struct {
		header string
		want   byteRange
		whole  bool
		unsat  bool
	}{
		{header: "", whole: true},
		{header: "bytes=0-99", want: byteRange{0, 100}},
		{header: "bytes=100-199", want: byteRange{100, 100}},
		{header: "bytes=990-", want: byteRange{990, 10}},
		{header: "bytes=0-", want: byteRange{0, 1000}},
		{header: "bytes=-10", want: byteRange{990, 10}},
		{header: "bytes=-5000", want: byteRange{0, 1000}},
		{header: "bytes=500-5000", want: byteRange{500, 500}},
		{header: "bytes=999-999", want: byteRange{999, 1}},
		{header: "bytes=1000-", unsat: true},
		{header: "bytes=1000-2000", unsat: true},
		{header: "bytes=-0", unsat: true},
		{header: "bytes=0-9,20-29", whole: true},             // several ranges: the whole file
		{header: "items=0-9", whole: true},                   // another unit
		{header: "bytes=9-0", whole: true},                   // last before first: invalid, ignored
		{header: "bytes=a-9", whole: true},                   // not a number
		{header: "bytes=-a", whole: true},                    // not a number
		{header: "bytes=5", whole: true},                     // no dash
		{header: "bytes=-1-2", whole: true},                  // a negative suffix
		{header: "bytes=99999999999999999999-", whole: true}, // out of int64
	} {
		got, whole, err := parseRange(tc.header, size)
		switch {
		case tc.unsat:
			if !errors.Is(err, errUnsatisfiable) {
				t.Errorf("%q: got %+v whole=%v err=%v, want unsatisfiable", tc.header, got, whole, err)
			}
		case err != nil:
			t.Errorf("%q: unexpected error %v", tc.header, err)
		case whole != tc.whole || (!whole && got != tc.want):
			t.Errorf("%q: got %+v whole=%v, want %+v whole=%v", tc.header, got, whole, tc.want, tc.whole)
		}
	}
	if _, _, err := parseRange("bytes=0-", 0); !errors.Is(err, errUnsatisfiable) {
		t.Errorf("a range of an empty file: err %v, want unsatisfiable", err)
	}
}
