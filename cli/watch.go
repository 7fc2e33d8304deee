package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/internal/bytesize"
)

func watchCmd(e *env) *cobra.Command {
	var (
		asJSON bool
		since  uint64
		count  int
	)
	cmd := &cobra.Command{
		Use:     "watch [PREFIX]",
		GroupID: "files",
		Short:   "Print every change of the files (whose names start with PREFIX) as it happens",
		Long: `Print every put, delete and rename as it happens, one line each, until
interrupted. It goes on through the loss of a file server or a broker.

With --json each line is a JSON object carrying the change's sequence
("seq"); --since SEQ prints the changes after that one, so that a script
can resume where it stopped. --since 0 starts from what storage keeps: the
last change of each name, marked "compacted". A watch that fell so far
behind that deletes it missed are gone fails: list the files again.`,
		Example: "  ftfs watch\n  ftfs watch photos/ --json\n  ftfs watch --json --since 1234",
		Args:    cobra.MaximumNArgs(1),
		RunE: e.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			prefix := ""
			if len(args) == 1 {
				prefix = args[0]
			}
			if count < 0 {
				return usagef("--count %d: not a number of changes", count)
			}
			var opts []client.WatchOption
			if cmd.Flags().Changed("since") {
				opts = append(opts, client.WatchAfter(since))
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			w, err := c.Watch(ctx, prefix, opts...)
			if err != nil {
				return err
			}
			defer w.Close()
			printed := 0
			for ev := range w.Events() {
				if err := printChange(e.stdout, ev, asJSON); err != nil {
					return err
				}
				if printed++; count > 0 && printed == count {
					return nil
				}
			}
			if err := w.Err(); err != nil {
				if errors.Is(err, client.ErrWatchBehind) {
					return fmt.Errorf("%w (run `ftfs ls`, then watch without --since)", err)
				}
				return err
			}
			return nil // interrupted: how a watch ends
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print each change as a JSON object on a line")
	cmd.Flags().Uint64Var(&since, "since", 0, "print the changes after the one with this sequence (a --json line's \"seq\")")
	cmd.Flags().IntVarP(&count, "count", "n", 0, "stop after this many changes (0: never)")
	return cmd
}

// printChange prints one change: a JSON object, or a line of its time, op,
// name, size and who made it.
func printChange(w io.Writer, ev client.ChangeEvent, asJSON bool) error {
	if asJSON {
		b, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	name := ev.Name
	if ev.From != "" {
		name = ev.From + " -> " + ev.Name
	}
	size := bytesize.Human(ev.Size)
	if ev.Op == client.OpDelete {
		size = "-"
	}
	by := ev.By
	if by == "" {
		by = "-"
	}
	_, err := fmt.Fprintf(w, "%s  %-6s  %s  %s  %s\n", ev.Time.Local().Format(time.DateTime), ev.Op, name, size, by)
	return err
}
