package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/internal/bytesize"
)

// listPrinter prints ls's output a page of the listing at a time.
type listPrinter interface {
	// page prints the next files of the listing.
	page(files []client.FileInfo) error
	// end finishes the output once the listing has ended.
	end() error
}

// fileTable prints ls's text output: a header, then a line a file, in
// columns two spaces apart, the last cell of a line unpadded (the layout
// of a text/tabwriter, which ls used while it printed the whole listing
// at once). A page is printed as it comes, with each column as wide as its
// widest cell so far, so that the columns line up from one page to the
// next unless a later page holds a wider cell.
type fileTable struct {
	w      io.Writer
	long   bool
	header []string // until printed, with the first page
	widths []int
	buf    bytes.Buffer
}

func newFileTable(w io.Writer, long bool) *fileTable {
	t := &fileTable{w: w, long: long, header: []string{"NAME", "SIZE", "MODIFIED", "OWNER"}}
	if long {
		t.header = append(t.header, "DIGEST")
	}
	return t
}

func (t *fileTable) page(files []client.FileInfo) error {
	rows := make([][]string, 0, len(files)+1)
	if t.header != nil {
		rows = append(rows, t.header)
		t.header = nil
	}
	for _, f := range files {
		row := []string{f.Name, bytesize.Human(f.Size), f.Modified.Local().Format(time.DateTime), f.Owner}
		if t.long {
			row = append(row, f.Digest)
		}
		if f.Pending {
			row = append(row, "(pending: not yet copied into the replica)")
		}
		rows = append(rows, row)
	}
	for _, row := range rows {
		for i, cell := range row[:len(row)-1] {
			if i == len(t.widths) {
				t.widths = append(t.widths, 0)
			}
			t.widths[i] = max(t.widths[i], utf8.RuneCountInString(cell))
		}
	}
	t.buf.Reset()
	for _, row := range rows {
		for i, cell := range row[:len(row)-1] {
			t.buf.WriteString(cell)
			t.buf.WriteString(strings.Repeat(" ", t.widths[i]-utf8.RuneCountInString(cell)+2))
		}
		t.buf.WriteString(row[len(row)-1])
		t.buf.WriteByte('\n')
	}
	_, err := t.w.Write(t.buf.Bytes())
	return err
}

// end prints the header if no page came (ListPages always gives one).
func (t *fileTable) end() error {
	if t.header != nil {
		return t.page(nil)
	}
	return nil
}

// jsonList prints ls --json: one JSON array of every file, laid out as
// printJSON lays out a slice (indented by two spaces), page by page.
type jsonList struct {
	w   io.Writer
	n   int // files printed
	buf bytes.Buffer
}

func (j *jsonList) page(files []client.FileInfo) error {
	j.buf.Reset()
	for _, f := range files {
		b, err := json.MarshalIndent(f, "  ", "  ")
		if err != nil {
			return err
		}
		if j.n == 0 {
			j.buf.WriteString("[\n  ")
		} else {
			j.buf.WriteString(",\n  ")
		}
		j.buf.Write(b)
		j.n++
	}
	_, err := j.w.Write(j.buf.Bytes())
	return err
}

func (j *jsonList) end() error {
	closing := "\n]\n"
	if j.n == 0 {
		closing = "[]\n"
	}
	_, err := io.WriteString(j.w, closing)
	return err
}
