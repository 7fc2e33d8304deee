package bytesize

import "testing"

func TestParse(t *testing.T) {
	good := []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"4096", 4096},
		{"17B", 17},
		{"512K", 512 << 10},
		{"512k", 512 << 10},
		{"512KiB", 512 << 10},
		{"512KB", 512_000},
		{"10GiB", 10 << 30},
		{"10gib", 10 << 30},
		{"10G", 10 << 30},
		{"500MB", 500_000_000},
		{"3 MiB", 3 << 20},
		{"2TiB", 2 << 40},
		{"1TB", 1_000_000_000_000},
		{"8191PiB", 8191 << 50},
	}
	for _, c := range good {
		got, err := Parse(c.in)
		if err != nil || got != c.want {
			t.Errorf("Parse(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "GiB", "-1", "1.5GiB", "10XB", "10 G B", "8192PiB", "99999999999999999999", "0x10"} {
		if got, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) = %d; want an error", in, got)
		}
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		in   int64
		want string
	}{
		{0, "0B"}, {1023, "1023B"}, {1024, "1KiB"}, {1536, "1.5KiB (1536 bytes)"},
		{3 << 20, "3MiB"}, {64 << 30, "64GiB"}, {3<<20 + 1, "3.0MiB (3145729 bytes)"},
	} {
		if got := Format(c.in); got != c.want {
			t.Errorf("Format(%d) = %q; want %q", c.in, got, c.want)
		}
		if c.in%1024 == 0 || c.in < 1024 {
			if back, err := Parse(Format(c.in)); err != nil || back != c.in {
				t.Errorf("Parse(Format(%d)) = %d, %v", c.in, back, err)
			}
		}
	}
}

func TestHuman(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 64 << 20: "64.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := Human(n); got != want {
			t.Errorf("Human(%d) = %q, want %q", n, got, want)
		}
	}
}
