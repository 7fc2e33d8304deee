package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/internal/bytesize"
)

// treeFlags are put's flags for whole directories.
type treeFlags struct {
	recursive, update, asJSON, verbose bool
	jobs                               int
}

// maxListed bounds the skipped or failed files put -r names one by one.
const maxListed = 20

// treePrefix is where put -r puts DIR's files: the PREFIX given, else
// DIR's base name (as get -r keeps a prefix's last directory, so that the
// two round-trip).
func treePrefix(dir string, args []string) (string, error) {
	if len(args) == 2 {
		return args[1], nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("put -r: %w", err)
	}
	base := filepath.Base(abs)
	if base == string(filepath.Separator) || base == "." || base == "" {
		return "", usagef("put -r: %s has no base name to use as the prefix; give a PREFIX (\"\" for none)", dir)
	}
	return base, nil
}

// putTreeCmd is put -r DIR [PREFIX]. The directory is checked before any
// connection is made; every read goes through a handle confined to it.
func (e *env) putTreeCmd(cmd *cobra.Command, args []string, tf treeFlags, noClobber bool) error {
	dir := args[0]
	if dir == "-" {
		return usagef("put -r: LOCAL must be a directory, not stdin")
	}
	if tf.jobs < 1 {
		return usagef("put -r: --jobs must be at least 1")
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("put -r: %w", err)
	}
	if !st.IsDir() {
		return usagef("put -r: %s is not a directory (put without -r uploads one file)", dir)
	}
	prefix, err := treePrefix(dir, args)
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("put -r: %w", err)
	}
	defer root.Close()
	return e.withClient(func(cmd *cobra.Command, c *client.Client, _ []string) error {
		opts := []client.TreeOption{client.TreeJobs(tf.jobs)}
		if tf.update {
			opts = append(opts, client.TreeUpdate())
		}
		if noClobber {
			opts = append(opts, client.TreeNoOverwrite())
		}
		bar := e.treeBar(prefix)
		if bar != nil {
			opts = append(opts, client.OnTreeProgress(bar.update))
		}
		if tf.verbose {
			opts = append(opts, client.OnTreeFile(func(f client.TreeFile) {
				if f.Name == "" || f.State == client.TreeFailed {
					return // listed at the end
				}
				bar.clear()
				fmt.Fprintf(e.stdout, "%s %s (%s)\n", f.State, f.Name, bytesize.Human(f.Size))
			}))
		}
		start := time.Now()
		res, err := c.PutTree(cmd.Context(), root.FS(), prefix, opts...)
		bar.finish()
		took := time.Since(start)
		if err != nil && res.Uploaded+res.Unchanged+res.Existing+res.NotSent+len(res.Failed)+len(res.Ignored) == 0 {
			return err // refused before anything was tried: the error says it all
		}
		e.reportTree(res, tf.asJSON, dir, prefix, took)
		if errors.Is(err, context.Canceled) && !tf.asJSON {
			fmt.Fprintln(e.stderr, "ftfs: the same command with --update sends only what is missing")
		}
		if err != nil && (res.Uploaded > 0 || res.NotSent > 0 || len(res.Failed) > 0) && !errors.Is(err, client.ErrUnauthorized) {
			return fmt.Errorf("%w (the same command with --update sends only what is missing)", err)
		}
		return err
	})(cmd, args)
}

// reportTree prints what put -r did: the entries skipped and failed on
// stderr (at most maxListed of each) and a summary, or with asJSON all of
// it as JSON, on stdout.
func (e *env) reportTree(res client.TreeResult, asJSON bool, dir, prefix string, took time.Duration) {
	if asJSON {
		type entry struct {
			Path   string `json:"path"`
			Name   string `json:"name,omitempty"`
			Reason string `json:"reason,omitempty"`
			Error  string `json:"error,omitempty"`
		}
		out := struct {
			Dir       string  `json:"dir"`
			Prefix    string  `json:"prefix"`
			Uploaded  int     `json:"uploaded"`
			Bytes     int64   `json:"bytes"`
			Unchanged int     `json:"unchanged"`
			Existing  int     `json:"existing"`
			NotSent   int     `json:"not_sent"`
			Seconds   float64 `json:"seconds"`
			Ignored   []entry `json:"ignored"`
			Failed    []entry `json:"failed"`
		}{Dir: dir, Prefix: prefix, Uploaded: res.Uploaded, Bytes: res.Bytes, Unchanged: res.Unchanged, Existing: res.Existing,
			NotSent: res.NotSent, Seconds: took.Seconds(), Ignored: []entry{}, Failed: []entry{}}
		for _, f := range res.Ignored {
			out.Ignored = append(out.Ignored, entry{Path: f.Path, Reason: f.Reason})
		}
		for _, f := range res.Failed {
			out.Failed = append(out.Failed, entry{Path: f.Path, Name: f.Name, Error: f.Err.Error()})
		}
		_ = printJSON(e.stdout, out)
		return
	}
	for i, f := range res.Ignored {
		if i == maxListed {
			fmt.Fprintf(e.stderr, "ftfs: ... and %d more skipped\n", len(res.Ignored)-i)
			break
		}
		fmt.Fprintf(e.stderr, "ftfs: skipped %s: %s\n", filepath.Join(dir, filepath.FromSlash(f.Path)), f.Reason)
	}
	var failed []client.TreeFile
	interrupted := 0
	for _, f := range res.Failed {
		if errors.Is(f.Err, context.Canceled) || errors.Is(f.Err, context.DeadlineExceeded) {
			interrupted++
		} else {
			failed = append(failed, f)
		}
	}
	for i, f := range failed {
		if i == maxListed {
			fmt.Fprintf(e.stderr, "ftfs: ... and %d more failed\n", len(failed)-i)
			break
		}
		fmt.Fprintf(e.stderr, "ftfs: failed %s: %v\n", filepath.Join(dir, filepath.FromSlash(f.Path)), f.Err)
	}
	if interrupted > 0 {
		fmt.Fprintf(e.stderr, "ftfs: %d files were being sent when interrupted: each may or may not have been stored\n", interrupted)
	}
	line := fmt.Sprintf("uploaded %s (%s) from %s to %s in %.1fs", files(res.Uploaded), bytesize.Human(res.Bytes), dir, prefixText(prefix), took.Seconds())
	for _, part := range []struct {
		n    int
		what string
	}{{res.Unchanged, "unchanged"}, {res.Existing, "existing"}, {len(res.Ignored), "skipped"}, {len(failed), "failed"}, {interrupted, "interrupted"}, {res.NotSent, "not sent"}} {
		if part.n > 0 {
			line += fmt.Sprintf(", %d %s", part.n, part.what)
		}
	}
	fmt.Fprintln(e.stdout, line)
}

// files is "1 file" or "n files".
func files(n int) string {
	if n == 1 {
		return "1 file"
	}
	return fmt.Sprintf("%d files", n)
}

// prefixText shows a prefix as the start of names.
func prefixText(prefix string) string {
	if prefix == "" {
		return `"" (no prefix)`
	}
	return filepathSlash(prefix)
}

func filepathSlash(p string) string {
	for len(p) > 0 && p[len(p)-1] == '/' {
		p = p[:len(p)-1]
	}
	return p + "/"
}

// treeBar is put -r's one progress bar (bytes, with the files in its
// description), drawn on a terminal only; nil otherwise. Its methods do
// nothing on nil.
type treeBar struct {
	what string
	bar  *progressbar.ProgressBar
	e    *env
}

func (e *env) treeBar(prefix string) *treeBar {
	if !isTerminal(e.stderr) {
		return nil
	}
	return &treeBar{what: "put -r " + filepathSlash(prefix), e: e}
}

// update is called by PutTree, one call at a time.
func (b *treeBar) update(p client.TreeProgress) {
	if b.bar == nil {
		b.bar = progressbar.NewOptions64(max(p.BytesTotal, 1),
			progressbar.OptionSetWriter(b.e.stderr),
			progressbar.OptionShowBytes(true),
			progressbar.OptionShowTotalBytes(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
	}
	desc := fmt.Sprintf("%s %d/%d files", b.what, p.Files, p.FilesTotal)
	if p.Failed > 0 {
		desc += fmt.Sprintf(", %d failed", p.Failed)
	}
	if p.Failovers > 0 {
		desc += " (server lost, resumed)"
	}
	b.bar.Describe(desc)
	b.bar.ChangeMax64(max(p.BytesTotal, 1))
	_ = b.bar.Set64(p.Bytes)
}

func (b *treeBar) clear() {
	if b != nil && b.bar != nil {
		_ = b.bar.Clear()
	}
}

func (b *treeBar) finish() {
	if b != nil && b.bar != nil {
		_ = b.bar.Finish()
	}
}
