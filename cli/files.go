package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/internal/bytesize"
)

func lsCmd(e *env) *cobra.Command {
	var asJSON, long bool
	cmd := &cobra.Command{
		Use:     "ls [PREFIX]",
		GroupID: "files",
		Short:   "List files, optionally those whose names start with PREFIX",
		Example: "  ftfs ls\n  ftfs ls photos/ -l\n  ftfs ls --json",
		Args:    cobra.MaximumNArgs(1),
		RunE: e.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			// Each page is printed as it arrives, so that a listing of
			// any length takes the memory of one page.
			out := listPrinter(&jsonList{w: e.stdout})
			if !asJSON {
				out = newFileTable(e.stdout, long)
			}
			noticed := false
			err := c.ListPages(cmd.Context(), prefix, func(page client.Listing) error {
				if page.Replica != nil && !noticed {
					e.noticeReplica(page.Replica)
					noticed = true
				}
				return out.page(page.Files)
			})
			if err != nil {
				// Not ended: a --json array cut short stays open, so
				// that it does not parse as the whole listing.
				return err
			}
			return out.end()
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVarP(&long, "long", "l", false, "show digests")
	return cmd
}

func statCmd(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "stat NAME",
		GroupID: "files",
		Short:   "Show a file's size, owner, time and SHA-256 digest",
		Args:    cobra.ExactArgs(1),
		RunE: e.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			f, err := c.Stat(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			e.noticeReplica(f.Replica)
			if asJSON {
				return printJSON(e.stdout, f)
			}
			fmt.Fprintf(e.stdout, "name:     %s\nsize:     %s (%d bytes)\nmodified: %s\nowner:    %s\ndigest:   %s\nversion:  %s\nchunks:   %d\n",
				f.Name, bytesize.Human(f.Size), f.Size, f.Modified.Local().Format(time.DateTime), f.Owner, f.Digest, f.Version, f.Chunks)
			return nil
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func rmCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME...",
		GroupID: "files",
		Short:   "Delete files (yours, or any where you have the delete right; see ftfs access)",
		Args:    cobra.MinimumNArgs(1),
		RunE: e.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			var errs []error
			for _, name := range args {
				if err := c.Delete(cmd.Context(), name); err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintf(e.stdout, "deleted %s\n", name)
			}
			return errors.Join(errs...)
		}),
	}
}

func mvCmd(e *env) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "mv OLD NEW",
		GroupID: "files",
		Short:   "Rename a file (yours, or any where you have the delete right; see ftfs access)",
		Args:    cobra.ExactArgs(2),
		RunE: e.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			if _, err := c.Rename(cmd.Context(), args[0], args[1], force); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "renamed %s to %s\n", args[0], args[1])
			return nil
		}),
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "replace NEW if it exists")
	return cmd
}

func putCmd(e *env) *cobra.Command {
	var noClobber bool
	var tf treeFlags
	cmd := &cobra.Command{
		Use:     "put LOCAL [REMOTE]",
		GroupID: "files",
		Short:   "Upload a file (LOCAL - reads stdin), or with -r a whole directory",
		Long: `Upload LOCAL as REMOTE (default: LOCAL's base name). The file appears only
once it is complete and its SHA-256 digest checks out; if the server handling
the upload dies, the upload continues on another one.

With -r, LOCAL is a directory and REMOTE a prefix (default: the directory's
base name, so that "put -r photos" then "get -r photos" gives the same
tree back): every regular file below LOCAL is uploaded as
REMOTE/its/path/below/LOCAL, many at once over one connection, with one
progress bar for the whole tree. Symbolic links are not followed, and
they, devices, pipes and sockets are skipped with a notice. If any local
name cannot be an ftfs name, nothing is uploaded and the command names
them. A file that fails does not stop the others; the command then lists
the failures and exits 1. If a file server dies, its requests go to the
other one: no file is stored twice and none is lost. --update skips files
whose name already holds the same size and SHA-256 digest, so running the
same command again after an interruption sends only what is missing.`,
		Example: "  ftfs put report.pdf\n  ftfs put report.pdf docs/2026/report.pdf\n  tar c dir | ftfs put - dir.tar\n" +
			"  ftfs put -r photos                  # photos/... from ./photos\n" +
			"  ftfs put -r ./pictures photos/2026  # photos/2026/... from ./pictures\n" +
			"  ftfs put -r --update photos         # send only what changed",
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if tf.recursive {
				return e.putTreeCmd(cmd, args, tf, noClobber)
			}
			if tf.update || tf.asJSON || tf.verbose || cmd.Flags().Changed("jobs") {
				return usagef("put: --update, --json, --verbose and --jobs go with -r")
			}
			return e.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
				return e.putOne(cmd, c, args, noClobber)
			})(cmd, args)
		},
	}
	cmd.Flags().BoolVarP(&noClobber, "no-clobber", "n", false, "fail if REMOTE exists (with -r: skip every file whose name exists)")
	cmd.Flags().BoolVarP(&tf.recursive, "recursive", "r", false, "upload every regular file below the LOCAL directory under the REMOTE prefix")
	cmd.Flags().BoolVarP(&tf.update, "update", "u", false, "with -r: skip files whose name holds the same size and SHA-256 digest already")
	cmd.Flags().BoolVar(&tf.asJSON, "json", false, "with -r: print the summary as JSON")
	cmd.Flags().BoolVarP(&tf.verbose, "verbose", "v", false, "with -r: print a line for every file")
	cmd.Flags().IntVarP(&tf.jobs, "jobs", "j", client.DefaultTreeJobs, "with -r: files sent at once")
	return cmd
}

// putOne uploads one file, or stdin.
func (e *env) putOne(cmd *cobra.Command, c *client.Client, args []string, noClobber bool) error {
	local, remote := args[0], ""
	if len(args) == 2 {
		remote = args[1]
	}
	var r io.Reader
	size := int64(-1)
	if local == "-" {
		if remote == "" {
			return usagef("put from stdin needs a REMOTE name")
		}
		r = e.stdin
	} else {
		f, err := os.Open(local)
		if err != nil {
			return fmt.Errorf("put: %w", err)
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return fmt.Errorf("put: %w", err)
		}
		if st.IsDir() {
			return usagef("put: %s is a directory (put -r uploads a directory)", local)
		}
		r, size = f, st.Size()
		if remote == "" {
			remote = filepath.Base(local)
		}
	}
	opts := e.progress("put "+remote, size)
	if noClobber {
		opts = append(opts, client.NoOverwrite())
	}
	fi, err := c.Put(cmd.Context(), remote, r, size, opts...)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "uploaded %s (%s, %s)\n", fi.Name, bytesize.Human(fi.Size), fi.Digest)
	return nil
}

// progress returns a progress bar option when stderr is a terminal, and
// none when output is piped.
func (e *env) progress(what string, size int64) []client.TransferOption {
	if !isTerminal(e.stderr) {
		return nil
	}
	bar := progressbar.NewOptions64(size,
		progressbar.OptionSetWriter(e.stderr),
		progressbar.OptionSetDescription(what),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
	failovers := 0
	return []client.TransferOption{client.OnProgress(func(p client.Progress) {
		_ = bar.Set64(p.Done)
		if p.Failovers > failovers {
			failovers = p.Failovers
			bar.Describe(fmt.Sprintf("%s (server lost, resumed)", what))
		}
		if p.Total >= 0 && p.Done >= p.Total {
			_ = bar.Finish()
		}
	})}
}
