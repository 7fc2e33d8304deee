// Package ftfstest runs a real ftfs system for tests: the ftfs binary,
// built once per test process, started as separate broker, primary and
// backup processes on free loopback ports, each with its own data dir, and
// helpers to kill, freeze, restart and inspect them, so that a test reads
// as the scenario it checks:
//
//	sys := ftfstest.Start(t, ftfstest.Brokers(1), ftfstest.Servers("primary", "backup"))
//	c := sys.Login(t, "alice")
//	want := sys.PutRandom(t, c, "big.bin", 64<<20)
package ftfstest

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/ftfs/ftfs/certs"
	"github.com/ftfs/ftfs/client"
	"github.com/ftfs/ftfs/subjects"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds the ftfs binary once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			buildErr = fmt.Errorf("go env GOMOD: %w", err)
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(out)))
		dir, err := os.MkdirTemp("", "ftfs-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "ftfs")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/ftfs")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

type config struct {
	brokers    int
	servers    []string
	tls        bool
	serverArgs []string
	roleArgs   map[string][]string
}

// Option shapes a system.
type Option func(*config)

// Brokers sets the number of brokers: 1, or 3 for a JetStream cluster.
func Brokers(n int) Option { return func(c *config) { c.brokers = n } }

// Servers lists the file server roles to start ("primary", "backup").
func Servers(roles ...string) Option { return func(c *config) { c.servers = roles } }

// ServerArgs adds flags to every file server's command line (both roles),
// such as "--user-quota", "4MiB".
func ServerArgs(args ...string) Option {
	return func(c *config) { c.serverArgs = append(c.serverArgs, args...) }
}

// RoleArgs adds flags to one role's command line ("primary", "backup"),
// after ServerArgs': flags whose values differ between the servers, such
// as each one's --metrics-addr.
func RoleArgs(role string, args ...string) Option {
	return func(c *config) {
		if c.roleArgs == nil {
			c.roleArgs = map[string][]string{}
		}
		c.roleArgs[role] = append(c.roleArgs[role], args...)
	}
}

// TLS runs the system with TLS: development certificates made by `ftfs
// certs dev`, brokers that require TLS from clients (and on their routes,
// in a cluster), and every connection the harness makes or starts trusting
// their CA (System.TLSCA). EnvTLS turns it on for every system.
func TLS() Option { return func(c *config) { c.tls = true } }

// EnvTLS, set to 1, runs every system a test starts with TLS (as TLS()):
// `FTFS_TEST_TLS=1 go test ./testing/e2e` is the end-to-end suite over TLS.
const EnvTLS = "FTFS_TEST_TLS"

// System is a running ftfs system.
type System struct {
	ServicePassword string
	AdminPassword   string
	SystemPassword  string // the operator's (subjects.OperatorUser, SystemUser)
	GatewayPassword string // the share link gateway's (subjects.GatewayUser)
	Dir             string // root of every data dir
	ReplicaDir      string // the backup's replica
	TLSCA           string // with TLS: the CA file that signed the brokers' certificate

	brokers   []*Process
	mu        sync.Mutex
	procs     map[string]*Process
	users     map[string]string // name -> password
	loadUsers int               // users made for workloads
	t         testing.TB
}

// Process is one role's process.
type Process struct {
	Name    string
	args    []string
	env     []string
	cmd     *exec.Cmd
	exited  chan struct{}
	frozen  bool
	port    int  // brokers: client port
	monitor int  // brokers: HTTP port
	tls     bool // brokers: clients connect with TLS

	logs    bytes.Buffer // its output so far, every run (under System.mu)
	logsCut bool         // logs reached maxLogs
}

// maxLogs bounds the output kept of one process.
const maxLogs = 16 << 20

// Logs returns the output (stdout and stderr, line by line) of a process
// so far, over all its runs: "primary", "backup", "broker1", ...
func (sys *System) Logs(name string) string {
	sys.mu.Lock()
	defer sys.mu.Unlock()
	p := sys.procs[name]
	if p == nil {
		return ""
	}
	if p.logsCut {
		return p.logs.String() + "[ftfstest: output cut]\n"
	}
	return p.logs.String()
}

// Pid is the process's current pid.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// URL is a broker's client URL.
func (p *Process) URL() string {
	if p.tls {
		return fmt.Sprintf("tls://127.0.0.1:%d", p.port)
	}
	return fmt.Sprintf("nats://127.0.0.1:%d", p.port)
}

// Start starts a system and stops it when the test ends.
func Start(t testing.TB, opts ...Option) *System {
	t.Helper()
	cfg := config{brokers: 1, servers: []string{"primary", "backup"}, tls: os.Getenv(EnvTLS) == "1"}
	for _, o := range opts {
		o(&cfg)
	}
	sys := &System{
		ServicePassword: randomSecret(),
		AdminPassword:   randomSecret(),
		SystemPassword:  randomSecret(),
		GatewayPassword: randomSecret(),
		Dir:             t.TempDir(),
		procs:           map[string]*Process{},
		users:           map[string]string{},
		t:               t,
	}
	sys.ReplicaDir = filepath.Join(sys.Dir, "replica")
	t.Cleanup(sys.stopAll)
	var tlsArgs []string
	if cfg.tls {
		dir := filepath.Join(sys.Dir, "certs")
		if out, err := exec.Command(Binary(t), "certs", "dev", dir).CombinedOutput(); err != nil {
			t.Fatalf("ftfs certs dev: %v\n%s", err, out)
		}
		sys.TLSCA = filepath.Join(dir, certs.CAFile)
		tlsArgs = []string{"--tls-cert", filepath.Join(dir, certs.CertFile), "--tls-key", filepath.Join(dir, certs.KeyFile), "--tls-ca", sys.TLSCA}
	}

	ports := FreePorts(t, 3*cfg.brokers)
	var routes []string
	for i := 0; i < cfg.brokers; i++ {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[3*i+2]))
	}
	for i := 0; i < cfg.brokers; i++ {
		name := fmt.Sprintf("broker%d", i+1)
		args := []string{"broker", "--name", name, "--port", fmt.Sprint(ports[3*i]), "--http-port", fmt.Sprint(ports[3*i+1]),
			"--data-dir", filepath.Join(sys.Dir, name)}
		if cfg.brokers > 1 {
			args = append(args, "--cluster", "ftfs-test", "--cluster-port", fmt.Sprint(ports[3*i+2]), "--routes", strings.Join(routes, ","))
		}
		args = append(args, tlsArgs...)
		p := &Process{Name: name, args: args, port: ports[3*i], monitor: ports[3*i+1], tls: cfg.tls, env: brokerEnv()}
		sys.brokers = append(sys.brokers, p)
		sys.procs[name] = p
		sys.launch(t, p)
	}
	for _, p := range sys.brokers {
		sys.waitHealthy(t, p)
	}
	replicas := "1"
	if cfg.brokers >= 3 {
		replicas = "3"
	}
	for _, role := range cfg.servers {
		args := []string{role, "--server", sys.URLs(), "--replicas", replicas, "--index-dir", sys.IndexDir(role)}
		if role == "backup" {
			args = append(args, "--replica-dir", sys.ReplicaDir)
		}
		if sys.TLSCA != "" {
			args = append(args, "--tls-ca", sys.TLSCA)
		}
		args = append(args, cfg.serverArgs...)
		args = append(args, cfg.roleArgs[role]...)
		p := &Process{Name: role, args: args}
		sys.procs[role] = p
		sys.launch(t, p)
	}
	sys.WaitServers(t, cfg.servers...)
	return sys
}

// URLs are every broker's client URL, comma separated.
func (sys *System) URLs() string {
	var urls []string
	for _, b := range sys.brokers {
		urls = append(urls, b.URL())
	}
	return strings.Join(urls, ",")
}

// Process returns a role's process ("primary", "backup", "broker1", ...).
func (sys *System) Process(name string) *Process {
	sys.mu.Lock()
	defer sys.mu.Unlock()
	return sys.procs[name]
}

// brokerMemoryLimit is the Go memory limit of each broker the harness
// starts, unless GOMEMLIMIT is set already. Its brokers share one machine,
// and nats-server keeps every block of the files stream it has read or
// written lately in an 8 MiB buffer: with Go's default collector, which
// lets a heap grow to twice what it holds live, two brokers of a
// ten-minute soak reached 9 and 11 GiB and the kernel killed one. (A heap
// profile in a three-minute soak: about 2 GiB in use, nearly all block
// buffers.) At 3 GiB each a three-minute soak did about as many operations
// (2031; 1905 to 2682 in three runs without) with no broker above 3 GiB.
const brokerMemoryLimit = "3GiB"

// brokerEnv is what the harness adds to a broker's environment.
func brokerEnv() []string {
	if os.Getenv("GOMEMLIMIT") != "" {
		return nil
	}
	return []string{"GOMEMLIMIT=" + brokerMemoryLimit}
}

func (sys *System) launch(t testing.TB, p *Process) {
	t.Helper()
	cmd := exec.Command(Binary(t), p.args...)
	cmd.Env = append(os.Environ(),
		subjects.EnvServicePassword+"="+sys.ServicePassword,
		subjects.EnvAdminPassword+"="+sys.AdminPassword,
		subjects.EnvSystemPassword+"="+sys.SystemPassword,
		subjects.EnvGatewayPassword+"="+sys.GatewayPassword,
	)
	cmd.Env = append(cmd.Env, p.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.Name, err)
	}
	p.cmd, p.exited, p.frozen = cmd, make(chan struct{}), false
	var copying sync.WaitGroup
	for _, r := range []io.Reader{stdout, stderr} {
		copying.Add(1)
		go func() {
			defer copying.Done()
			logLines(sys, p, r)
		}()
	}
	go func(cmd *exec.Cmd, exited chan struct{}) {
		copying.Wait()
		_ = cmd.Wait()
		close(exited)
	}(cmd, p.exited)
}

// logLines copies a process's output to the test log while the test runs,
// and keeps it for Logs.
func logLines(sys *System, p *Process, r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		sys.mu.Lock()
		if sys.t != nil {
			sys.t.Logf("[%s] %s", p.Name, sc.Text())
		}
		if p.logs.Len()+len(sc.Bytes()) < maxLogs {
			p.logs.Write(sc.Bytes())
			p.logs.WriteByte('\n')
		} else {
			p.logsCut = true
		}
		sys.mu.Unlock()
	}
}

// stopAll ends every process: thaw, SIGTERM, then SIGKILL after a grace
// period, and reaps them all.
func (sys *System) stopAll() {
	sys.mu.Lock()
	procs := make([]*Process, 0, len(sys.procs))
	for _, p := range sys.procs {
		procs = append(procs, p)
	}
	sys.mu.Unlock()
	// Servers first, brokers last, so that servers shut down cleanly.
	for _, stage := range []func(*Process) bool{
		func(p *Process) bool { return !strings.HasPrefix(p.Name, "broker") },
		func(p *Process) bool { return strings.HasPrefix(p.Name, "broker") },
	} {
		var wg sync.WaitGroup
		for _, p := range procs {
			if !stage(p) || p.cmd == nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				stop(p, 5*time.Second)
			}()
		}
		wg.Wait()
	}
	sys.mu.Lock()
	sys.t = nil // no logging after the test
	sys.mu.Unlock()
}

func stop(p *Process, grace time.Duration) {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGCONT)
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
}

// Stop ends a process as an operator would (SIGTERM), and waits until it
// is gone; after 30 s it is killed.
func (sys *System) Stop(t testing.TB, name string) {
	t.Helper()
	stop(sys.Process(name), 30*time.Second)
	t.Logf("stopped %s", name)
}

// IndexDir is where a file server role keeps its files index's snapshot
// (--index-dir).
func (sys *System) IndexDir(role string) string { return filepath.Join(sys.Dir, role+"-index") }

// Kill sends SIGKILL to a process and waits until it is gone.
func (sys *System) Kill(t testing.TB, name string) {
	t.Helper()
	p := sys.Process(name)
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not die", name)
	}
	t.Logf("killed %s", name)
}

// Freeze stops a process with SIGSTOP; Thaw resumes it.
func (sys *System) Freeze(t testing.TB, name string) {
	t.Helper()
	p := sys.Process(name)
	if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	p.frozen = true
}

// Thaw resumes a frozen process.
func (sys *System) Thaw(t testing.TB, name string) {
	t.Helper()
	p := sys.Process(name)
	if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	p.frozen = false
}

// Restart starts a dead process again with its flags and data dir and waits
// until it serves.
func (sys *System) Restart(t testing.TB, name string) {
	t.Helper()
	if strings.HasPrefix(name, "broker") {
		sys.RestartTogether(t, name)
		return
	}
	sys.relaunch(t, name)
	sys.WaitServers(t, name)
}

// relaunch starts a dead process again with its flags and data dir.
func (sys *System) relaunch(t testing.TB, name string) {
	t.Helper()
	p := sys.Process(name)
	select {
	case <-p.exited:
	default:
		t.Fatalf("restart %s: still running", name)
	}
	sys.launch(t, p)
}

// RestartTogether starts dead brokers again all at once and waits until
// each is healthy: the brokers of a cluster that lost them all, which
// report themselves healthy only once enough of them are up to elect a
// JetStream meta leader.
func (sys *System) RestartTogether(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		sys.relaunch(t, name)
	}
	for _, name := range names {
		sys.waitHealthy(t, sys.Process(name))
	}
}

func (sys *System) waitHealthy(t testing.TB, p *Process) {
	t.Helper()
	url := fmt.Sprintf("http://127.0.0.1:%d/healthz", p.monitor)
	// Minutes: a broker killed with gigabytes in its store rebuilds the
	// state of its streams before it listens again.
	Eventually(t, 5*time.Minute, p.Name+" healthy", func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// Connect makes a raw NATS connection to the brokers, trusting their CA
// when the system runs TLS, as the NATS CLI would.
func (sys *System) Connect(opts ...nats.Option) (*nats.Conn, error) {
	// A broker busy with a test's load may take more than the 2 s default
	// to send its INFO; a caller's own Timeout comes later and wins.
	opts = append([]nats.Option{nats.Timeout(10 * time.Second)}, opts...)
	if sys.TLSCA != "" {
		opts = append([]nats.Option{nats.RootCAs(sys.TLSCA)}, opts...)
	}
	return nats.Connect(sys.URLs(), opts...)
}

// ServiceConn is a connection with the file servers' storage identity.
func (sys *System) ServiceConn(t testing.TB) *nats.Conn {
	t.Helper()
	return sys.connAs(t, subjects.ServiceUser, sys.ServicePassword)
}

// OperatorConn is a connection with the operator's identity: all of
// JetStream, for what the file servers' own identity may not touch (a
// bench's scratch streams).
func (sys *System) OperatorConn(t testing.TB) *nats.Conn {
	t.Helper()
	return sys.connAs(t, subjects.OperatorUser, sys.SystemPassword)
}

// FrontConn is a connection with the file servers' front identity, in the
// users' account: micro discovery (`nats micro`) runs there.
func (sys *System) FrontConn(t testing.TB) *nats.Conn {
	t.Helper()
	return sys.connAs(t, subjects.FrontUser, sys.ServicePassword)
}

// connAs connects as one of the static identities, for the whole test.
func (sys *System) connAs(t testing.TB, user, password string) *nats.Conn {
	t.Helper()
	nc, err := sys.Connect(nats.UserInfo(user, password), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatalf("connection as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Instances pings the file service over nc, a FrontConn, and maps
// instance IDs to roles.
func (sys *System) Instances(t testing.TB, nc *nats.Conn) map[string]string {
	t.Helper()
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(subjects.DiscoveryPing, inbox, nil); err != nil {
		return nil
	}
	out := map[string]string{}
	for {
		m, err := sub.NextMsg(300 * time.Millisecond)
		if err != nil {
			return out
		}
		var p micro.Ping
		if json.Unmarshal(m.Data, &p) == nil && p.ID != "" {
			out[p.ID] = p.Metadata[subjects.MetaRole]
		}
	}
}

// WaitServers waits until a file server of each role answers PING.
func (sys *System) WaitServers(t testing.TB, roles ...string) {
	t.Helper()
	nc := sys.FrontConn(t)
	defer nc.Close()
	Eventually(t, 60*time.Second, fmt.Sprintf("file servers %v", roles), func() bool {
		have := map[string]bool{}
		for _, r := range sys.Instances(t, nc) {
			have[r] = true
		}
		for _, r := range roles {
			if !have[r] {
				return false
			}
		}
		return true
	})
}

// InstanceRole names the role of a file server instance ID.
func (sys *System) InstanceRole(t testing.TB, id string) string {
	t.Helper()
	nc := sys.FrontConn(t)
	defer nc.Close()
	role := sys.Instances(t, nc)[id]
	if role == "" {
		t.Fatalf("no file server instance %s", id)
	}
	return role
}

// ObjectStore opens the files bucket with the service identity.
func (sys *System) ObjectStore(t testing.TB) jetstream.ObjectStore {
	t.Helper()
	js, err := jetstream.New(sys.ServiceConn(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	obs, err := js.ObjectStore(ctx, subjects.FilesBucket)
	if err != nil {
		t.Fatal(err)
	}
	return obs
}

// Dial connects as a user with a password, without logging in.
func (sys *System) Dial(t testing.TB, user, password string, opts ...client.Option) (*client.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return sys.DialWith(ctx, client.Credentials{User: user, Password: password}, opts...)
}

// DialWith connects a client with any credentials (a session token, say),
// trusting the brokers' CA when the system runs TLS.
func (sys *System) DialWith(ctx context.Context, cred client.Credentials, opts ...client.Option) (*client.Client, error) {
	if sys.TLSCA != "" {
		opts = append(opts, client.WithTLS(sys.TLSCA))
	}
	return client.Dial(ctx, strings.Split(sys.URLs(), ","), cred, opts...)
}

// Login returns a logged-in client of user ("admin", or a user AddUser
// made), closed when the test ends.
func (sys *System) Login(t testing.TB, user string, opts ...client.Option) *client.Client {
	t.Helper()
	pw := sys.AdminPassword
	if user != "admin" {
		sys.mu.Lock()
		pw = sys.users[user]
		sys.mu.Unlock()
	}
	c, err := sys.Dial(t, user, pw, opts...)
	if err != nil {
		t.Fatalf("dial as %s: %v", user, err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Login(ctx); err != nil {
		t.Fatalf("login as %s: %v", user, err)
	}
	return c
}

// AddUser creates a user through the admin and returns its password.
func (sys *System) AddUser(t testing.TB, name string) string {
	t.Helper()
	pw := randomSecret()
	admin := sys.Login(t, "admin")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := admin.AddUser(ctx, name, pw, false); err != nil {
		t.Fatalf("add user %s: %v", name, err)
	}
	sys.mu.Lock()
	sys.users[name] = pw
	sys.mu.Unlock()
	return pw
}

// CLI runs the ftfs binary as a user would, with its own config dir.
type CLI struct {
	sys  *System
	home string
	// Timeout is how long one run may take before it is killed (exit
	// code -1); 0 is three minutes.
	Timeout time.Duration
}

// CLI returns a command-line user whose session lives in its own dir.
func (sys *System) CLI(t testing.TB) *CLI {
	return &CLI{sys: sys, home: t.TempDir()}
}

// AdminCLI returns a command-line user logged in as the admin.
func (sys *System) AdminCLI(t testing.TB) *CLI {
	t.Helper()
	c := sys.CLI(t)
	if _, stderr, code := c.Run(t, nil, []string{"FTFS_PASSWORD=" + sys.AdminPassword}, "login", "admin"); code != 0 {
		t.Fatalf("ftfs login admin: exit %d: %s", code, stderr)
	}
	return c
}

// Run runs ftfs with args and env additions ("K=V") and returns its output
// and exit code.
func (c *CLI) Run(t testing.TB, stdin io.Reader, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out bytes.Buffer
	res := c.Exec(t, stdin, &out, env, args...)
	return out.String(), res.Stderr, res.Code
}

// Result is how a CLI run ended.
type Result struct {
	Stderr string
	Code   int
	MaxRSS int64 // peak resident set size, bytes, as sampled while it ran
	// CPU is the user and system time it took.
	CPU time.Duration
}

// Exec runs ftfs with the given stdin and stdout.
func (c *CLI) Exec(t testing.TB, stdin io.Reader, stdout io.Writer, env []string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmp.Or(c.Timeout, 3*time.Minute))
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(t), args...)
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+c.home, "NATS_URL="+c.sys.URLs())
	if c.sys.TLSCA != "" {
		cmd.Env = append(cmd.Env, subjects.EnvTLSCA+"="+c.sys.TLSCA)
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin, cmd.Stdout = stdin, stdout
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatalf("run ftfs %v: %v", args, err)
	}
	// Sample the high-water mark of the running program: wait4's maxrss
	// would count the test process's memory the child shared before exec.
	var peak atomic.Int64
	sampled := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if rss, err := PeakRSS(cmd.Process.Pid); err == nil && rss > peak.Load() {
				peak.Store(rss)
			}
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	err := cmd.Wait()
	close(done)
	<-sampled
	res := Result{Stderr: errb.String(), MaxRSS: peak.Load()}
	if ps := cmd.ProcessState; ps != nil {
		res.CPU = ps.UserTime() + ps.SystemTime()
	}
	if ee, ok := err.(*exec.ExitError); ok {
		res.Code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run ftfs %v: %v", args, err)
	}
	return res
}

// Eventually polls cond until it holds or the deadline passes.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// handedOut are the ports FreePorts has given in this process.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// FreePorts finds n free loopback ports, none given before in this process.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	handedOut.Lock()
	defer handedOut.Unlock()
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		port := l.Addr().(*net.TCPAddr).Port
		if handedOut.ports[port] {
			continue // a system started alongside (t.Parallel) may not have bound it yet
		}
		handedOut.ports[port] = true
		ports = append(ports, port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

func randomSecret() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// PeakRSS is a process's peak resident set size in bytes (VmHWM).
func PeakRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:")), "%d kB", &kb); err != nil {
				return 0, err
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmHWM for pid %d", pid)
}

// StreamLeader names the broker leading a JetStream stream.
func (sys *System) StreamLeader(t testing.TB, stream string) string {
	t.Helper()
	js, err := jetstream.New(sys.ServiceConn(t))
	if err != nil {
		t.Fatal(err)
	}
	var leader string
	Eventually(t, 30*time.Second, "a leader of "+stream, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, stream)
		if err != nil {
			return false
		}
		if ci := st.CachedInfo().Cluster; ci != nil {
			leader = ci.Leader
		}
		return leader != ""
	})
	return leader
}

// MetaLeader names the broker that is the JetStream meta leader, from a
// live broker's monitoring endpoint.
func (sys *System) MetaLeader(t testing.TB) string {
	t.Helper()
	var leader string
	Eventually(t, 30*time.Second, "a JetStream meta leader", func() bool {
		for _, b := range sys.brokers {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/jsz", b.monitor))
			if err != nil {
				continue
			}
			var jsz struct {
				Meta struct {
					Leader string `json:"leader"`
				} `json:"meta_cluster"`
			}
			err = json.NewDecoder(resp.Body).Decode(&jsz)
			resp.Body.Close()
			if err == nil && jsz.Meta.Leader != "" {
				leader = jsz.Meta.Leader
				return true
			}
		}
		return false
	})
	return leader
}

// WaitHealthy waits until every broker that is running and not frozen
// reports itself healthy: JetStream current, every stream caught up.
func (sys *System) WaitHealthy(t testing.TB) {
	t.Helper()
	for _, p := range sys.brokers {
		select {
		case <-p.exited:
			continue
		default:
		}
		if !p.frozen {
			sys.waitHealthy(t, p)
		}
	}
}

// BrokerNames names every broker.
func (sys *System) BrokerNames() []string {
	var names []string
	for _, b := range sys.brokers {
		names = append(names, b.Name)
	}
	return names
}

// BrokersHolding names the running brokers that hold a connection named
// name (subjects.ConnNamePrimary, ...), as their monitoring port lists
// them.
func (sys *System) BrokersHolding(t testing.TB, name string) []string {
	t.Helper()
	var holding []string
	for _, p := range sys.brokers {
		select {
		case <-p.exited:
			continue
		default:
		}
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/connz?limit=1024", p.monitor))
		if err != nil {
			t.Logf("connz of %s: %v", p.Name, err)
			continue
		}
		var connz struct {
			Connections []struct {
				Name string `json:"name"`
			} `json:"connections"`
		}
		err = json.NewDecoder(resp.Body).Decode(&connz)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("connz of %s: %v", p.Name, err)
		}
		for _, c := range connz.Connections {
			if c.Name == name {
				holding = append(holding, p.Name)
				break
			}
		}
	}
	return holding
}
