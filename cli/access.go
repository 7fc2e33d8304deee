package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ftfs/ftfs/client"
)

func accessCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "access",
		GroupID: "files",
		Short:   "Show and set who may read, list, write, delete and administer a folder",
		Long: `Access rules, one per folder, decide who may do what to the files below it:
the rule of the nearest folder at or above a file's governs it alone. A rule
is lines of RIGHTS: MEMBERS, where the rights are read, list, write, delete
and admin, and a member is a user, @group or * (every user):

  read,list: *
  write,delete: alice, @eng

read gets a file; list shows its name; write adds names and changes your
own files; delete removes or replaces anyone's; admin sets the rules in
the folder and below it. Without stored rules the root lets everyone read,
list and add files, home/ is closed, and home/USER/ is USER's alone. Site
admins pass every rule. FOLDER "/" is the root.`,
	}
	set := &cobra.Command{
		Use:   "set FOLDER LINE...",
		Short: "Give a folder a rule, in place of the one it had or inherited",
		Example: "  ftfs access set projects/x/ 'read,list: @eng' 'write,delete,admin: alice'\n" +
			"  ftfs access set home/alice/shared/ 'read,list: *' 'read,list,write,delete,admin: alice'\n" +
			"  ftfs access set / \"$(cat rules.txt)\"",
		Args: cobra.MinimumNArgs(1),
		RunE: e.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			lines := ruleLines(args[1:])
			if len(lines) == 0 {
				return usagef("no rule lines: give lines such as 'read,list: *' (ftfs access rm %s returns the folder to its inherited rule)", args[0])
			}
			r, err := c.SetAccess(cmd.Context(), folderArg(args[0]), lines...)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "rule of %s set:\n", showFolder(r.Prefix))
			for _, l := range r.Lines {
				fmt.Fprintf(e.stdout, "  %s\n", l)
			}
			return nil
		}),
	}
	rm := &cobra.Command{
		Use:   "rm FOLDER",
		Short: "Remove a folder's rule: it inherits its parent's (or its built-in one) again",
		Args:  cobra.ExactArgs(1),
		RunE: e.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			prefix := folderArg(args[0])
			if err := c.RemoveAccess(cmd.Context(), prefix); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "rule of %s removed\n", showFolder(prefix))
			return nil
		}),
	}
	var asJSON bool
	show := &cobra.Command{
		Use:     "show [PATH]",
		Short:   "Show the rule governing a file or folder, where it comes from, and what you may do there",
		Example: "  ftfs access show projects/x/plan.txt\n  ftfs access show home/alice/",
		Args:    cobra.MaximumNArgs(1),
		RunE: e.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			path := ""
			if len(args) == 1 && args[0] != "/" {
				path = args[0]
			}
			r, err := c.ShowAccess(cmd.Context(), path)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(e.stdout, r)
			}
			from := "rule of " + showFolder(r.Rule.Prefix)
			if r.Rule.Builtin {
				from = "built-in " + from
			}
			fmt.Fprintf(e.stdout, "%s: %s\n", showPath(r.Path), from)
			if len(r.Rule.Lines) == 0 {
				fmt.Fprintln(e.stdout, "  (no lines: site admins only)")
			}
			for _, l := range r.Rule.Lines {
				fmt.Fprintf(e.stdout, "  %s\n", l)
			}
			you := strings.Join(r.Rights, ",")
			if you == "" {
				you = "none"
			}
			if r.SiteAdmin {
				you += " (site admin)"
			}
			fmt.Fprintf(e.stdout, "you may: %s\n", you)
			return nil
		}),
	}
	show.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	var lsJSON bool
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List the stored rules you may see",
		Args:  cobra.NoArgs,
		RunE: e.withClient(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			rules, err := c.ListAccess(cmd.Context())
			if err != nil {
				return err
			}
			if lsJSON {
				return printJSON(e.stdout, rules)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "FOLDER\tRULE\tSET BY\tUPDATED")
			for _, r := range rules {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", showFolder(r.Prefix), strings.Join(r.Lines, "; "), r.By, r.Updated.Local().Format(time.DateTime))
			}
			return tw.Flush()
		}),
	}
	ls.Flags().BoolVar(&lsJSON, "json", false, "print JSON")
	cmd.AddCommand(set, rm, show, ls)
	return cmd
}

func groupCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "group",
		GroupID: "admin",
		Short:   "Manage the groups access rules name as @GROUP (admin; ls for everyone)",
	}
	add := &cobra.Command{
		Use:     "add GROUP USER...",
		Short:   "Add users to a group, creating it",
		Example: "  ftfs group add eng alice bob",
		Args:    cobra.MinimumNArgs(2),
		RunE: e.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			g, err := c.AddToGroup(cmd.Context(), strings.TrimPrefix(args[0], "@"), args[1:]...)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "group %s: %s\n", g.Name, strings.Join(g.Users, ", "))
			return nil
		}),
	}
	rm := &cobra.Command{
		Use:   "rm GROUP [USER...]",
		Short: "Remove users from a group, or without users the group itself",
		Args:  cobra.MinimumNArgs(1),
		RunE: e.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			group := strings.TrimPrefix(args[0], "@")
			if err := c.RemoveFromGroup(cmd.Context(), group, args[1:]...); err != nil {
				return err
			}
			if len(args) == 1 {
				fmt.Fprintf(e.stdout, "removed group %s\n", group)
			} else {
				fmt.Fprintf(e.stdout, "removed %s from group %s\n", strings.Join(args[1:], ", "), group)
			}
			return nil
		}),
	}
	var asJSON bool
	ls := &cobra.Command{
		Use:   "ls [GROUP]",
		Short: "List groups and their users (an admin sees every group, a user their own)",
		Args:  cobra.MaximumNArgs(1),
		RunE: e.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			group := ""
			if len(args) == 1 {
				group = strings.TrimPrefix(args[0], "@")
			}
			groups, err := c.ListGroups(cmd.Context(), group)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(e.stdout, groups)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "GROUP\tUSERS")
			for _, g := range groups {
				fmt.Fprintf(tw, "%s\t%s\n", g.Name, strings.Join(g.Users, ", "))
			}
			return tw.Flush()
		}),
	}
	ls.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(add, rm, ls)
	return cmd
}

// folderArg is a folder as the wire names it: "/" is the root (""), and
// the trailing slash may be left out.
func folderArg(s string) string {
	if s == "" || s == "/" {
		return ""
	}
	if !strings.HasSuffix(s, "/") {
		s += "/"
	}
	return s
}

// ruleLines splits arguments into a rule's lines: each argument may hold
// several (a file's content); blank lines and lines starting with # are
// left out.
func ruleLines(args []string) []string {
	var out []string
	for _, a := range args {
		for _, l := range strings.Split(a, "\n") {
			l = strings.TrimSpace(l)
			if l != "" && !strings.HasPrefix(l, "#") {
				out = append(out, l)
			}
		}
	}
	return out
}

func showFolder(prefix string) string {
	if prefix == "" {
		return "/ (the root)"
	}
	return prefix
}

func showPath(path string) string {
	if path == "" {
		return "/"
	}
	return path
}
