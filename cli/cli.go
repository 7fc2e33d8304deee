// Package cli is the ftfs command line: the server roles (broker, primary,
// backup) and the user verbs (login, ls, put, get, ...). cmd/ftfs only calls
// Main.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/subjects"
)

// env is what a command runs with; tests give buffers.
type env struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

// Main runs the ftfs command line and returns the process exit code: 0 on
// success, 1 on failure, 2 on a usage error.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) (code int) {
	e := &env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv}
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "ftfs: internal error: %v (please report it)\n", r)
			code = 1
		}
	}()
	if path := e.getenv(EnvCPUProfile); path != "" {
		stop, err := StartCPUProfile(strings.ReplaceAll(path, "%p", strconv.Itoa(os.Getpid())))
		if err != nil {
			fmt.Fprintf(stderr, "ftfs: %v\n", err)
			return 1
		}
		defer stop()
	}
	root := newRoot(e)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		fmt.Fprintf(stderr, "ftfs: %v\n", err)
		if cmd != nil {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
		return 2
	}
	fmt.Fprintf(stderr, "ftfs: %s\n", explain(err))
	return 1
}

// EnvCPUProfile, when set, names a file that gets a CPU profile of the
// whole command (go tool pprof reads it): where a get's or a server's time
// goes, measured in the process itself. A %p in the name stands for the
// process ID, so that every process of a system writes its own.
const EnvCPUProfile = "FTFS_CPUPROFILE"

// StartCPUProfile profiles the process into the file path until the
// returned stop (the bench's -cpuprofile uses it too).
func StartCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// usageError marks a mistake in the command line.
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

func isCobraUsage(err error) bool {
	s := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "requires at least", "requires at most", "invalid argument", "flag needs an argument", "accepts at most"} {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

// explain turns an error into one line that says what went wrong and, where
// it helps, what to do.
func explain(err error) string {
	msg := err.Error()
	switch {
	case errors.Is(err, errNotLoggedIn):
		return msg
	case errors.Is(err, client.ErrUnauthorized):
		return msg + " (run `ftfs login`)"
	case errors.Is(err, client.ErrNoFileServer):
		return msg + " (start one: `ftfs primary` or `ftfs backup`; `go tool goreman start` starts the whole system)"
	case errors.Is(err, client.ErrUnavailable) && strings.Contains(msg, "x509:"):
		return msg + " (give the CA that signed the brokers' certificates: --tls-ca or " + subjects.EnvTLSCA + ")"
	case errors.Is(err, client.ErrUnavailable) && strings.Contains(msg, "secure connection not available"):
		return msg + " (a TLS CA is set but the broker does not use TLS)"
	case errors.Is(err, client.ErrUnavailable):
		return msg + " (is the system running? check `ftfs status` and --server)"
	case errors.Is(err, client.ErrForbidden):
		return msg
	case errors.Is(err, client.ErrIntegrity):
		return msg + " (nothing was kept; try again)"
	case errors.Is(err, context.Canceled):
		return "interrupted"
	}
	return msg
}

func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "ftfs",
		Short: "Fault-tolerant file sharing on NATS",
		Long: `ftfs shares files through a service that keeps working while any one of its
processes is killed.

Server roles:  ftfs broker | ftfs primary | ftfs backup
User verbs:    ftfs login, ls, put, get, stat, rm, mv, watch, share, access, status, user, group ...
Link server:   ftfs gateway

The servers are found through the broker URLs in --server or NATS_URL
(default nats://127.0.0.1:4222).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().String("server", "", "broker URLs, comma separated (default $NATS_URL or nats://127.0.0.1:4222)")
	root.PersistentFlags().Duration("timeout", time.Second, "how long a request may go without a sign of life from its file server before it is sent to another")
	root.PersistentFlags().String("log-level", "warn", "log level: debug, info, warn, error")
	root.PersistentFlags().String("tls-ca", "", "CA file that signed the brokers' certificates: connect with TLS and trust it (default $"+subjects.EnvTLSCA+")")
	root.AddGroup(&cobra.Group{ID: "files", Title: "Files:"}, &cobra.Group{ID: "session", Title: "Session:"},
		&cobra.Group{ID: "admin", Title: "Administration:"}, &cobra.Group{ID: "servers", Title: "Server roles:"})
	root.SetHelpCommandGroupID("session")
	root.SetCompletionCommandGroupID("session")
	root.AddCommand(
		brokerCmd(e), primaryCmd(e), backupCmd(e), restoreCmd(e),
		loginCmd(e), logoutCmd(e), whoamiCmd(e), statusCmd(e),
		lsCmd(e), putCmd(e), getCmd(e), statCmd(e), rmCmd(e), mvCmd(e), watchCmd(e), accessCmd(e),
		userCmd(e), groupCmd(e), certsCmd(e), versionCmd(e),
		shareCmd(e), gatewayCmd(e),
	)
	return root
}

func (e *env) logger(cmd *cobra.Command) *slog.Logger {
	lvl, _ := cmd.Flags().GetString("log-level")
	if cmd.GroupID == "servers" && !cmd.Flags().Changed("log-level") {
		lvl = "info" // a server's log is its record of what happened
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(lvl)); err != nil {
		level = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: level}))
}

// servers are the broker URLs from --server, NATS_URL or the default.
func (e *env) servers(cmd *cobra.Command) []string {
	s, _ := cmd.Flags().GetString("server")
	if s == "" {
		s = e.getenv("NATS_URL")
	}
	if s == "" {
		s = "nats://127.0.0.1:4222"
	}
	var out []string
	for _, u := range strings.Split(s, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// tlsCA is the CA file from --tls-ca or the environment, "" when neither
// names one (a tls:// URL then trusts the system's roots).
func (e *env) tlsCA(cmd *cobra.Command) string {
	ca, _ := cmd.Flags().GetString("tls-ca")
	if ca == "" {
		ca = e.getenv(subjects.EnvTLSCA)
	}
	return ca
}
