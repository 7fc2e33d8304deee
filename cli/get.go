package cli

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/internal/bytesize"
	"github.com/ftfs/ftfs/subjects"
)

func getCmd(e *env) *cobra.Command {
	var recursive bool
	cmd := &cobra.Command{
		Use:     "get REMOTE [LOCAL]",
		GroupID: "files",
		Short:   "Download a file, or with -r every file under a prefix (LOCAL - writes stdout)",
		Long: `Download REMOTE to LOCAL (default: REMOTE's base name in the current
directory; a directory as LOCAL receives the base name). The download is
written to a temporary file and renamed into place only once its SHA-256
digest checks out; on any failure nothing is left behind.

With -r, REMOTE is a prefix (a directory such as photos/2026, or "" for
everything) and LOCAL a directory (default: the current one): every file
under the prefix is downloaded below it, keeping the path from the
prefix's last directory on ("photos/2026/a.jpg" lands in LOCAL/2026/a.jpg).
Nothing is ever written outside LOCAL, whatever names the server lists:
names are checked, and every write goes through a handle confined to LOCAL
(os.Root), which refuses ".." and symbolic links leading out of it.`,
		Example: "  ftfs get report.pdf\n  ftfs get docs/2026/report.pdf /tmp/\n  ftfs get dir.tar - | tar x\n  ftfs get -r photos/2026 ./pictures",
		Args:    cobra.RangeArgs(1, 2),
		RunE: e.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			remote, local := args[0], ""
			if len(args) == 2 {
				local = args[1]
			}
			switch {
			case recursive:
				return e.getTree(cmd.Context(), c, remote, local)
			case local == "-":
				fi, err := c.Get(cmd.Context(), remote, e.stdout)
				if err == nil {
					e.noticeReplica(fi.Replica)
				}
				return err
			}
			dest, err := localPath(remote, local)
			if err != nil {
				return err
			}
			root, err := os.OpenRoot(filepath.Dir(dest))
			if err != nil {
				return fmt.Errorf("get: %w", err)
			}
			defer root.Close()
			return e.getInto(cmd.Context(), c, remote, root, filepath.Base(dest))
		}),
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "download every file under the REMOTE prefix into the LOCAL directory")
	return cmd
}

// getTree downloads every file under prefix into dir.
func (e *env) getTree(ctx context.Context, c *client.Client, prefix, dir string) error {
	if dir == "" {
		dir = "."
	}
	if dir == "-" {
		return usagef("get -r: LOCAL must be a directory, not stdout")
	}
	// The files are downloaded a page of the listing at a time, so that a
	// tree of any size takes the memory of one page.
	var root *os.Root
	defer func() {
		if root != nil {
			root.Close()
		}
	}()
	noticed := false
	err := c.ListPages(ctx, prefix, func(page client.Listing) error {
		if page.Replica != nil && !noticed {
			e.noticeReplica(page.Replica)
			noticed = true
		}
		if root == nil && len(page.Files) > 0 {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("get -r: %w", err)
			}
			var err error
			if root, err = os.OpenRoot(dir); err != nil {
				return fmt.Errorf("get -r: %w", err)
			}
		}
		for _, f := range page.Files {
			rel, err := treePath(prefix, f.Name)
			if err != nil {
				return err
			}
			if d := filepath.Dir(rel); d != "." {
				if err := root.MkdirAll(d, 0o755); err != nil {
					return fmt.Errorf("get %q: %w", f.Name, err)
				}
			}
			if err := e.getInto(ctx, c, f.Name, root, rel); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if root == nil {
		return fmt.Errorf("get -r %q: %w: no file has that prefix", prefix, client.ErrNotFound)
	}
	return nil
}

// treePath is where a listed file goes below the local directory of a
// recursive get: its name from the prefix's last directory on. A name the
// server lists is not trusted: one that is not a valid ftfs name, or whose
// path would not stay below the directory, is refused.
func treePath(prefix, name string) (string, error) {
	if err := subjects.ValidName(name); err != nil {
		return "", fmt.Errorf("get: server listed an unusable name: %w", err)
	}
	if !strings.HasPrefix(name, prefix) {
		return "", fmt.Errorf("get: server listed %q, which does not start with %q", name, prefix)
	}
	parent := ""
	if p := strings.TrimSuffix(prefix, "/"); strings.Contains(p, "/") {
		parent = path.Dir(p) + "/"
	}
	rel := filepath.FromSlash(strings.TrimPrefix(name, parent))
	if !filepath.IsLocal(rel) {
		return "", fmt.Errorf("get: %q would land outside the local directory", name)
	}
	return rel, nil
}

// getInto downloads remote to rel below root through a temporary file in
// the same directory, renamed into place once the digest checks out.
func (e *env) getInto(ctx context.Context, c *client.Client, remote string, root *os.Root, rel string) error {
	st, err := c.Stat(ctx, remote)
	if err != nil {
		return err
	}
	tmpRel := filepath.Join(filepath.Dir(rel), "."+filepath.Base(rel)+".ftfs-"+rand.Text()[:10])
	tmp, err := root.OpenFile(tmpRel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("get: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			tmp.Close()
			_ = root.Remove(tmpRel)
		}
	}()
	fi, err := c.Get(ctx, remote, tmp, e.progress("get "+remote, st.Size)...)
	if err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("get: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("get: %w", err)
	}
	if err := root.Rename(tmpRel, rel); err != nil {
		return fmt.Errorf("get: %w", err)
	}
	keep = true
	fmt.Fprintf(e.stdout, "downloaded %s to %s (%s, verified %s)\n", fi.Name, filepath.Join(root.Name(), rel), bytesize.Human(fi.Size), fi.Digest)
	e.noticeReplica(fi.Replica)
	return nil
}

// localPath picks where a single download goes. Whatever name the server
// uses, the file lands in the chosen directory: only the remote name's last
// segment is ever used as a local name.
func localPath(remote, local string) (string, error) {
	base := path.Base(strings.ReplaceAll(remote, "\\", "/"))
	if base == "." || base == ".." || base == "/" || base == "" {
		return "", usagef("get: %q has no usable file name; give LOCAL", remote)
	}
	switch {
	case local == "":
		return base, nil
	case strings.HasSuffix(local, string(filepath.Separator)):
		return filepath.Join(local, base), nil
	}
	if st, err := os.Stat(local); err == nil && st.IsDir() {
		return filepath.Join(local, base), nil
	}
	return local, nil
}
