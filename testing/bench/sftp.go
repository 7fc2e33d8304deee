package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ftfs/ftfs/testing/ftfstest"
)

// sftpTarget is a private sshd on a loopback port, started by and for
// the harness as the current user, with a host key and a client key made
// for the run, and the sftp client's command line to reach it.
type sftpTarget struct {
	dir    string // keys, config, and the remote files (remote/)
	port   int
	user   string
	sshd   *exec.Cmd
	exited chan struct{}
}

// sshdPaths are where an sshd is looked for, after $PATH.
var sshdPaths = []string{"/usr/sbin/sshd", "/usr/local/sbin/sshd"}

// startSFTP starts an sshd in dir. When it cannot (no sshd, no sftp
// client, or sshd refuses to run) it returns nil and the note to print.
func startSFTP(tb testing.TB, dir string) (*sftpTarget, string) {
	sshd, err := exec.LookPath("sshd")
	for _, p := range sshdPaths {
		if err != nil {
			sshd, err = exec.LookPath(p)
		}
	}
	if err != nil {
		return nil, "sftp: skipped (no sshd; install openssh-server)"
	}
	for _, tool := range []string{"sftp", "ssh-keygen"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Sprintf("sftp: skipped (no %s; install openssh-client)", tool)
		}
	}
	me, err := user.Current()
	if err != nil {
		return nil, fmt.Sprintf("sftp: skipped (current user: %v)", err)
	}
	t := &sftpTarget{dir: dir, port: ftfstest.FreePorts(tb, 1)[0], user: me.Username, exited: make(chan struct{})}
	if err := t.configure(); err != nil {
		return nil, fmt.Sprintf("sftp: skipped (%v)", err)
	}
	// sshd re-executes itself, so it wants an absolute path.
	if sshd, err = filepath.Abs(sshd); err != nil {
		return nil, fmt.Sprintf("sftp: skipped (%v)", err)
	}
	var stderr bytes.Buffer
	t.sshd = exec.Command(sshd, "-D", "-e", "-f", t.path("sshd_config"))
	t.sshd.Stderr = &stderr
	t.sshd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := t.sshd.Start(); err != nil {
		return nil, fmt.Sprintf("sftp: skipped (start sshd: %v)", err)
	}
	go func() {
		_ = t.sshd.Wait()
		close(t.exited)
	}()
	tb.Cleanup(t.stop)
	if err := t.waitListening(10 * time.Second); err != nil {
		t.stop()
		return nil, fmt.Sprintf("sftp: skipped (sshd did not start: %v: %s)", err, strings.TrimSpace(stderr.String()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := t.batch(ctx, "pwd"); err != nil {
		t.stop()
		return nil, fmt.Sprintf("sftp: skipped (sftp cannot log in: %v; sshd: %s)", err, strings.TrimSpace(stderr.String()))
	}
	return t, ""
}

func (t *sftpTarget) path(name string) string { return filepath.Join(t.dir, name) }

// configure makes the keys and the sshd configuration: unprivileged (no
// PAM, no strict modes on the temporary dir), key authentication only,
// the sftp server built into sshd.
func (t *sftpTarget) configure() error {
	if err := os.MkdirAll(t.path("remote"), 0o700); err != nil {
		return err
	}
	for _, key := range []string{"host_key", "client_key"} {
		out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ftfs-bench", "-f", t.path(key)).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ssh-keygen: %v: %s", err, out)
		}
	}
	pub, err := os.ReadFile(t.path("client_key.pub"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(t.path("authorized_keys"), pub, 0o600); err != nil {
		return err
	}
	config := strings.Join([]string{
		"Port " + strconv.Itoa(t.port),
		"ListenAddress 127.0.0.1",
		"HostKey " + t.path("host_key"),
		"PidFile " + t.path("sshd.pid"),
		"AuthorizedKeysFile " + t.path("authorized_keys"),
		"AllowUsers " + t.user,
		"UsePAM no",
		"StrictModes no",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PermitRootLogin prohibit-password",
		"Subsystem sftp internal-sftp",
		"LogLevel ERROR",
		"",
	}, "\n")
	return os.WriteFile(t.path("sshd_config"), []byte(config), 0o600)
}

func (t *sftpTarget) waitListening(within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", t.port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-t.exited:
			return errors.New("sshd exited")
		default:
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// batch runs sftp with commands as its batch file.
func (t *sftpTarget) batch(ctx context.Context, commands ...string) error {
	cmd := exec.CommandContext(ctx, "sftp", "-b", "-", "-q",
		"-i", t.path("client_key"), "-P", strconv.Itoa(t.port),
		"-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
		"-o", "UserKnownHostsFile="+t.path("known_hosts"), "-o", "LogLevel=ERROR",
		t.user+"@127.0.0.1")
	cmd.Stdin = strings.NewReader(strings.Join(commands, "\n") + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("sftp: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// remote is where name lives on the sftp side.
func (t *sftpTarget) remote(name string) string {
	return t.path("remote/" + strings.ReplaceAll(name, "/", "_"))
}

func (t *sftpTarget) put(ctx context.Context, local, name string) error {
	return t.batch(ctx, fmt.Sprintf("put %q %q", local, t.remote(name)))
}

// get downloads name into /dev/null, as the other systems' gets write
// nowhere, and returns the size of what it read: sftp ends in error when
// a transfer does not complete.
func (t *sftpTarget) get(ctx context.Context, name string) (int64, error) {
	if err := t.batch(ctx, fmt.Sprintf("get %q /dev/null", t.remote(name))); err != nil {
		return 0, err
	}
	st, err := os.Stat(t.remote(name))
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

func (t *sftpTarget) remove(name string) { os.Remove(t.remote(name)) }

// stop ends sshd (and the sessions it forked, in its process group).
func (t *sftpTarget) stop() {
	select {
	case <-t.exited:
		return
	default:
	}
	_ = syscall.Kill(-t.sshd.Process.Pid, syscall.SIGTERM)
	select {
	case <-t.exited:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-t.sshd.Process.Pid, syscall.SIGKILL)
		<-t.exited
	}
}
