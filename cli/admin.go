package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/subjects"
)

// envNewPassword gives a new user's password to scripts.
const envNewPassword = "FTFS_NEW_PASSWORD"

func userCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "user",
		GroupID: "admin",
		Short:   "Manage users (admin)",
	}
	var admin bool
	add := &cobra.Command{
		Use:     "add NAME",
		Short:   "Create a user; the password comes from " + envNewPassword + " or a prompt",
		Example: "  ftfs user add alice\n  FTFS_NEW_PASSWORD=... ftfs user add bob --admin",
		Args:    cobra.ExactArgs(1),
		RunE: e.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			pw, err := e.newPassword(args[0])
			if err != nil {
				return err
			}
			if err := c.AddUser(cmd.Context(), args[0], pw, admin); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "added user %s\n", args[0])
			return nil
		}),
	}
	add.Flags().BoolVar(&admin, "admin", false, "make the user an admin")
	rm := &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a user and end their sessions",
		Args:  cobra.ExactArgs(1),
		RunE: e.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			if err := c.RemoveUser(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "removed user %s\n", args[0])
			return nil
		}),
	}
	revoke := &cobra.Command{
		Use:   "revoke NAME",
		Short: "End every session of a user at once, on every server",
		Long: `End every session of a user at once, on every server: the user's next
request fails and a saved session no longer connects. The user can log in
again with their password (remove the user, or change the password, to stop
that).`,
		Args: cobra.ExactArgs(1),
		RunE: e.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			if err := c.RevokeSessions(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "sessions of %s revoked\n", args[0])
			return nil
		}),
	}
	passwd := &cobra.Command{
		Use:   "passwd [NAME]",
		Short: "Change a password (your own, given the current one; anyone's as an admin)",
		Args:  cobra.MaximumNArgs(1),
		RunE: e.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			name := c.User()
			if len(args) == 1 {
				name = args[0]
			}
			var current string
			if name == c.User() {
				var err error
				if current, err = e.readPassword(subjects.EnvUserPassword, "Current password for "+name+": "); err != nil {
					return err
				}
			}
			pw, err := e.newPassword(name)
			if err != nil {
				return err
			}
			if name == c.User() {
				err = c.ChangePassword(cmd.Context(), current, pw)
			} else {
				err = c.SetPassword(cmd.Context(), name, pw)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "password of %s changed\n", name)
			return nil
		}),
	}
	var asJSON bool
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List users",
		Args:  cobra.NoArgs,
		RunE: e.withClient(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			users, err := c.ListUsers(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(e.stdout, users)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "USER\tADMIN\tCREATED")
			for _, u := range users {
				fmt.Fprintf(tw, "%s\t%v\t%s\n", u.Name, u.Admin, u.Created.Local().Format(time.DateTime))
			}
			return tw.Flush()
		}),
	}
	ls.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(add, rm, revoke, passwd, ls)
	return cmd
}

// newPassword reads a new password from the environment, or asks twice.
func (e *env) newPassword(user string) (string, error) {
	if pw := e.getenv(envNewPassword); pw != "" {
		return pw, nil
	}
	pw, err := e.readPassword(envNewPassword, "New password for "+user+": ")
	if err != nil {
		return "", err
	}
	again, err := e.readPassword(envNewPassword, "Again: ")
	if err != nil {
		return "", err
	}
	if pw != again {
		return "", usagef("the passwords differ")
	}
	return pw, nil
}
