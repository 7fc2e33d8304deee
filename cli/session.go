package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/subjects"
)

var errNotLoggedIn = errors.New("not logged in: run `ftfs login`")

// savedSession is the session file: the login of this OS user.
type savedSession struct {
	User    string    `json:"user"`
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
	Servers []string  `json:"servers"`
	// TLSCA is the CA file the login trusted, for the verbs that follow.
	TLSCA string `json:"tls_ca,omitempty"`
}

// sessionPath is where the session lives: the user config dir, 0600.
func sessionPath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find config dir: %w", err)
	}
	return filepath.Join(dir, "ftfs", "session.json"), nil
}

func saveSession(s savedSession) error {
	p, err := sessionPath()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("save session: %w", err)
	}
	b, _ := json.MarshalIndent(s, "", "  ")
	return writeFileAtomic(p, b, 0o600)
}

func loadSession() (savedSession, error) {
	var s savedSession
	p, err := sessionPath()
	if err != nil {
		return s, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return s, errNotLoggedIn
	}
	if err != nil {
		return s, fmt.Errorf("read session: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil || s.Token == "" {
		return s, fmt.Errorf("session file %s is damaged: run `ftfs login`", p)
	}
	if time.Now().After(s.Expires) {
		return s, fmt.Errorf("session of %s expired at %s: run `ftfs login`", s.User, s.Expires.Local().Format(time.DateTime))
	}
	return s, nil
}

func removeSession() error {
	p, err := sessionPath()
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// writeFileAtomic writes via a temporary file and a rename, so a reader
// never sees half a file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// dial connects with the saved session; --server overrides its servers.
func (e *env) dial(cmd *cobra.Command) (*client.Client, error) {
	s, err := loadSession()
	if err != nil {
		return nil, err
	}
	servers := s.Servers
	if cmd.Flags().Changed("server") || len(servers) == 0 || e.getenv("NATS_URL") != "" {
		servers = e.servers(cmd)
	}
	ca := e.tlsCA(cmd)
	if ca == "" {
		ca = s.TLSCA
	}
	return client.Dial(cmd.Context(), servers, client.Credentials{User: s.User, Token: s.Token}, e.clientOptions(cmd, ca)...)
}

// clientOptions are the client options of the CLI's connections.
func (e *env) clientOptions(cmd *cobra.Command, tlsCA string) []client.Option {
	timeout, _ := cmd.Flags().GetDuration("timeout")
	opts := []client.Option{client.WithRequestTimeout(timeout), client.WithLogger(e.logger(cmd)), client.WithName("ftfs-cli")}
	if tlsCA != "" {
		opts = append(opts, client.WithTLS(tlsCA))
	}
	return opts
}

// withClient runs f with a connected client.
func (e *env) withClient(f func(cmd *cobra.Command, c *client.Client, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := e.dial(cmd)
		if err != nil {
			return err
		}
		defer c.Close()
		return f(cmd, c, args)
	}
}

// isTerminal says whether f is an interactive terminal.
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	return ok && term.IsTerminal(int(file.Fd()))
}

// readPassword reads a password from the environment variable, or asks for
// it on the terminal without echo.
func (e *env) readPassword(envVar, prompt string) (string, error) {
	if pw := e.getenv(envVar); pw != "" {
		return pw, nil
	}
	f, ok := e.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", usagef("no password: set %s or run in a terminal", envVar)
	}
	fmt.Fprint(e.stderr, prompt)
	b, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(e.stderr)
	if err != nil {
		return "", fmt.Errorf("read password: %w", err)
	}
	return string(b), nil
}

func (e *env) readLine(prompt string) (string, error) {
	if !isTerminal(e.stdin) {
		return "", usagef("no user name given")
	}
	fmt.Fprint(e.stderr, prompt)
	line, err := bufio.NewReader(e.stdin).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", err
	}
	return strings.TrimSpace(line), nil
}

func loginCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:     "login [USER]",
		GroupID: "session",
		Short:   "Log in and save the session",
		Long: `Log in with a user name and password. The password comes from
` + subjects.EnvUserPassword + ` (for scripts) or a hidden prompt. The session is saved with
0600 permissions in the user config directory and used by every other verb
until it expires or you log out.`,
		Example: "  ftfs login alice\n  FTFS_PASSWORD=... ftfs login alice",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			user := ""
			if len(args) == 1 {
				user = args[0]
			} else {
				var err error
				if user, err = e.readLine("User: "); err != nil {
					return err
				}
			}
			if err := subjects.ValidUser(user); err != nil {
				return usageError{err}
			}
			pw, err := e.readPassword(subjects.EnvUserPassword, "Password for "+user+": ")
			if err != nil {
				return err
			}
			servers := e.servers(cmd)
			ca := e.tlsCA(cmd)
			if ca != "" {
				// The session outlives the working directory it was
				// made in.
				if ca, err = filepath.Abs(ca); err != nil {
					return fmt.Errorf("TLS CA file: %w", err)
				}
			}
			c, err := client.Dial(cmd.Context(), servers, client.Credentials{User: user, Password: pw}, e.clientOptions(cmd, ca)...)
			if err != nil {
				return err
			}
			defer c.Close()
			sess, err := c.Login(cmd.Context())
			if err != nil {
				return err
			}
			// Keep every broker the cluster announced, so that later
			// commands need not reach the one broker login was given.
			if err := saveSession(savedSession{User: sess.User, Token: sess.Token, Expires: sess.Expires, Servers: c.Brokers(), TLSCA: ca}); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "Logged in as %s (session valid until %s)\n", sess.User, sess.Expires.Local().Format(time.DateTime))
			return nil
		},
	}
}

func logoutCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:     "logout",
		GroupID: "session",
		Short:   "End the session on every server and forget it",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := e.dial(cmd)
			if err == nil {
				err = c.Logout(cmd.Context())
				c.Close()
			}
			if rerr := removeSession(); rerr != nil {
				return rerr
			}
			if err != nil && !errors.Is(err, errNotLoggedIn) && !errors.Is(err, client.ErrUnauthorized) {
				return fmt.Errorf("session forgotten here, but the servers could not be told: %w", err)
			}
			fmt.Fprintln(e.stdout, "Logged out")
			return nil
		},
	}
}

func whoamiCmd(e *env) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "whoami",
		GroupID: "session",
		Short:   "Show the logged-in user",
		Args:    cobra.NoArgs,
		RunE: e.withClient(func(cmd *cobra.Command, c *client.Client, _ []string) error {
			s, err := c.WhoAmI(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(e.stdout, s)
			}
			role := "user"
			if s.Admin {
				role = "admin"
			}
			fmt.Fprintf(e.stdout, "%s (%s), session valid until %s\n", s.User, role, s.Expires.Local().Format(time.DateTime))
			return nil
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
