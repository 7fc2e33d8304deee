package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/subjects"
)

// EnvLinkPassword gives `ftfs share --password` its password without a
// prompt.
const EnvLinkPassword = "FTFS_LINK_PASSWORD"

func shareCmd(e *env) *cobra.Command {
	var (
		expire     time.Duration
		password   bool
		uploadOnly string
		gatewayURL string
		asJSON     bool
	)
	cmd := &cobra.Command{
		Use:     "share NAME | share --upload-only PREFIX",
		GroupID: "files",
		Short:   "Make a link to a file, or an upload-only link to a folder",
		Long: `Make a link that lets anyone who has it download NAME through ` + "`ftfs gateway`" + `,
without an account; with --upload-only, a link through which anyone who has
it may add new files below PREFIX, and do nothing else (no download, no
listing, no overwrite). The link is printed once: the servers keep only its
digest. It works until it expires (--expire, default 168h, at most 720h),
until ` + "`ftfs share rm ID`" + ` revokes it, or until you may no longer read the file
(write in the folder) or your account is removed.

The link is the gateway's base URL (--gateway-url or ` + subjects.EnvGatewayURL + `) and
/s/TOKEN. --password asks for a password (or takes ` + EnvLinkPassword + `) that the
link's users must give, as HTTP Basic authentication's password.`,
		Example: "  ftfs share report.pdf --expire 24h\n  ftfs share --upload-only inbox/alice --password\n" +
			"  ftfs share ls\n  ftfs share rm 3f9a0c12d4",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case uploadOnly == "" && len(args) != 1:
				return usagef("share: name the file to share, or give --upload-only PREFIX")
			case uploadOnly != "" && len(args) != 0:
				return usagef("share: --upload-only PREFIX makes a link to a folder; leave out NAME")
			case expire <= 0 || expire > subjects.MaxShareTTL || expire%time.Second != 0:
				return usagef("share: --expire %s: a link lasts whole seconds, from 1s to %s", expire, subjects.MaxShareTTL)
			}
			o := client.ShareOptions{Expires: expire}
			if password {
				pw, err := e.readPassword(EnvLinkPassword, "Link password: ")
				if err != nil {
					return err
				}
				if err := subjects.ValidPassword(pw); err != nil {
					return usagef("share: link password: %v", err)
				}
				o.Password = pw
			}
			return e.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
				return e.share(cmd, c, args, uploadOnly, gatewayURL, asJSON, o)
			})(cmd, args)
		},
	}
	cmd.Flags().DurationVar(&expire, "expire", subjects.DefaultShareTTL, "how long the link works")
	cmd.Flags().BoolVar(&password, "password", false, "ask the link's users for a password (prompted, or $"+EnvLinkPassword+")")
	cmd.Flags().StringVar(&uploadOnly, "upload-only", "", "make an upload-only link to this folder instead")
	cmd.Flags().StringVar(&gatewayURL, "gateway-url", "", "base URL of the gateway (default $"+subjects.EnvGatewayURL+")")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the link and its details as JSON")
	cmd.AddCommand(shareLsCmd(e), shareRmCmd(e))
	return cmd
}

// share makes the link and prints it: the link alone on stdout, what it
// opens and until when on stderr.
func (e *env) share(cmd *cobra.Command, c *client.Client, args []string, uploadOnly, gatewayURL string, asJSON bool, o client.ShareOptions) error {
	var info client.ShareInfo
	var err error
	if uploadOnly != "" {
		info, err = c.ShareUploads(cmd.Context(), strings.TrimSuffix(uploadOnly, "/"), o)
	} else {
		info, err = c.Share(cmd.Context(), args[0], o)
	}
	if err != nil {
		return err
	}
	base := gatewayURL
	if base == "" {
		base = e.getenv(subjects.EnvGatewayURL)
	}
	link := strings.TrimSuffix(base, "/") + "/s/" + info.Token
	if asJSON {
		return printJSON(e.stdout, struct {
			client.ShareInfo
			Link string `json:"link"`
		}{info, link})
	}
	fmt.Fprintln(e.stdout, link)
	if base == "" {
		fmt.Fprintf(e.stderr, "(no gateway URL: put the base URL of your `ftfs gateway` in front, or set --gateway-url or %s)\n", subjects.EnvGatewayURL)
	}
	what := "download " + info.Name
	if info.Kind == subjects.LinkUpload {
		what = "upload into " + info.Prefix + "/"
	}
	fmt.Fprintf(e.stderr, "link %s: %s, until %s%s; revoke with `ftfs share rm %s`\n",
		info.ID, what, info.Expires.Local().Format(time.DateTime), map[bool]string{true: ", with a password"}[info.Password], info.ID)
	return nil
}

func shareLsCmd(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List your links that have not expired (an admin's: everyone's)",
		Args:  cobra.NoArgs,
		RunE: e.withClient(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			shares, err := c.Shares(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(e.stdout, shares)
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tKIND\tOWNER\tEXPIRES\tPASSWORD\tFILE")
			for _, s := range shares {
				target := s.Name
				if s.Kind == subjects.LinkUpload {
					target = s.Prefix + "/"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Kind, s.Owner, s.Expires.Local().Format(time.DateTime),
					map[bool]string{true: "yes", false: "no"}[s.Password], target)
			}
			return tw.Flush()
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func shareRmCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "rm ID...",
		Short: "Revoke links at once (yours, or any as an admin)",
		Args:  cobra.MinimumNArgs(1),
		RunE: e.withClient(func(cmd *cobra.Command, c *client.Client, args []string) error {
			for _, id := range args {
				if err := c.Unshare(cmd.Context(), id); err != nil {
					return err
				}
				fmt.Fprintf(e.stdout, "revoked %s\n", id)
			}
			return nil
		}),
	}
}
