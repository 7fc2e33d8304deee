package store

import (
	"slices"
	"testing"
)

func TestPreferredKeepsTheTwoFileServersApart(t *testing.T) {
	three := []string{"b1", "b2", "b3"}
	for _, c := range []struct {
		servers []string
		home    int
		want    []string
	}{
		{three, 1, []string{"b1", "b3", "b2"}},
		{three, 2, []string{"b2", "b3", "b1"}},
		{[]string{"b1", "b2"}, 1, []string{"b1", "b2"}},
		{[]string{"b1", "b2"}, 2, []string{"b2", "b1"}},
		{[]string{"b1", "b2", "b3", "b4", "b5"}, 2, []string{"b2", "b3", "b4", "b5", "b1"}},
		{[]string{"b1"}, 2, []string{"b1"}},
		{three, 0, three},
	} {
		if got := Preferred(c.servers, c.home); !slices.Equal(got, c.want) {
			t.Errorf("Preferred(%v, %d) = %v, want %v", c.servers, c.home, got, c.want)
		}
	}
	// Whichever home broker dies, the two fall back to different ones.
	p, b := Preferred(three, 1), Preferred(three, 2)
	for dead := range 3 {
		first := func(order []string) string {
			for _, s := range order {
				if s != three[dead] {
					return s
				}
			}
			return ""
		}
		if first(p) == first(b) {
			t.Errorf("with %s dead both servers go to %s", three[dead], first(p))
		}
	}
}
