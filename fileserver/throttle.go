package fileserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/subjects"
)

// Login throttling. Every password check (a password connection through
// the auth callout, and the Login endpoint) first asks whether the user
// name may try now. Failures per user name live in a bucket of their own
// (subjects.LoginsBucket), so that requests alternating between file
// servers do not give an attacker a count per server. After LoginFree
// failures each attempt waits a back-off that doubles with each further
// failure; after LoginLockAfter failures the name is locked for LoginLock.
// A refused attempt is answered with CodeThrottled without looking at the
// password: a right password during a lock neither gets in nor shows
// itself. Names are counted whether a user has them or not, so the answers
// never tell which users exist. A successful login clears the count.
//
// Besides, each server counts password failures per client host in memory
// (auth callout only: the broker tells the host), with looser limits, so
// that one address trying many names is slowed down too.
//
// The check and the count are two steps: attempts already past the check
// when a failure is recorded still get their answer. That bounds an
// attacker's burst by the attempts in flight at once (the request slots),
// and keeps a successful login at one read of the bucket.

const (
	// loginMaxWait caps the doubling back-off (it never exceeds the lock).
	loginMaxWait = time.Minute
	// loginsKeep is how long the bucket keeps a record after its last
	// failure, and so the longest lock.
	loginsKeep = 24 * time.Hour
	// hostFactor multiplies a user name's limits for a client host: one
	// address (an office behind NAT) may hold many users who mistype.
	hostFactor = 3
	// localEntries bounds each in-memory failure map.
	localEntries = 4096
	// throttleStorage bounds each call to the logins bucket: the auth
	// callout must answer within the broker's authorization timeout, so a
	// bucket that does not answer falls back to the in-memory count.
	throttleStorage = time.Second
)

// LoginFree is how many failed logins a user name may have before any
// wait; the Config's login fields default to the others.
const (
	LoginFree             = 3
	DefaultLoginBackoff   = time.Second
	DefaultLoginLockAfter = 10
	DefaultLoginLock      = 15 * time.Minute
)

// throttlePolicy says how long failed logins make the next attempt wait.
type throttlePolicy struct {
	free      int           // failures allowed before any wait
	backoff   time.Duration // the first wait; doubles with each further failure
	maxWait   time.Duration // cap of the back-off
	lockAfter int           // failures that lock
	lock      time.Duration // how long a lock lasts, and failures are remembered
}

// failures is the record of failed logins under one key.
type failures struct {
	Count int       `json:"count"`
	Last  time.Time `json:"last"` // the latest failure
}

// userPolicy is the policy per user name that cfg configures.
func userPolicy(cfg Config) throttlePolicy {
	p := throttlePolicy{
		free:      LoginFree,
		backoff:   cfg.LoginBackoff,
		lockAfter: cfg.LoginLockAfter,
		lock:      cfg.LoginLock,
	}
	if p.backoff <= 0 {
		p.backoff = DefaultLoginBackoff
	}
	if p.lockAfter <= 0 {
		p.lockAfter = DefaultLoginLockAfter
	}
	if p.lock <= 0 {
		p.lock = DefaultLoginLock
	}
	p.lock = min(p.lock, loginsKeep)
	p.free = min(p.free, p.lockAfter)
	p.maxWait = min(loginMaxWait, p.lock)
	return p
}

// hostPolicy is the looser policy per client host.
func hostPolicy(user throttlePolicy) throttlePolicy {
	p := user
	p.free *= hostFactor
	p.lockAfter *= hostFactor
	return p
}

// current is f as it counts at now: failures are forgotten once p.lock has
// passed without one, so a lock that has run out starts the count afresh.
func (p throttlePolicy) current(f failures, now time.Time) failures {
	if f.Count > 0 && now.Sub(f.Last) >= p.lock {
		return failures{}
	}
	return f
}

// wait is how long an attempt at now must still wait after f: 0 when it
// may go ahead.
func (p throttlePolicy) wait(f failures, now time.Time) time.Duration {
	f = p.current(f, now)
	var d time.Duration
	switch {
	case f.Count >= p.lockAfter:
		d = p.lock
	case f.Count >= p.free:
		d = p.backoffAfter(f.Count)
	default:
		return 0
	}
	return max(0, f.Last.Add(d).Sub(now))
}

// locked says whether f, at now, is a lock rather than a back-off.
func (p throttlePolicy) locked(f failures, now time.Time) bool {
	return p.current(f, now).Count >= p.lockAfter
}

// backoffAfter is the wait after n failures, n >= p.free: p.backoff,
// doubled for each failure past p.free, capped at p.maxWait.
func (p throttlePolicy) backoffAfter(n int) time.Duration {
	d := p.backoff
	for i := p.free; i < n && d < p.maxWait; i++ {
		d *= 2
	}
	return min(d, p.maxWait)
}

// failed is f with one more failure at now.
func (p throttlePolicy) failed(f failures, now time.Time) failures {
	f = p.current(f, now)
	return failures{Count: f.Count + 1, Last: now}
}

// errThrottled is the answer to an attempt that must wait.
func errThrottled(wait time.Duration) error {
	secs := time.Duration(math.Ceil(wait.Seconds())) * time.Second
	return subjects.Errorf(subjects.CodeThrottled, "too many failed logins: try again in %s", max(secs, time.Second))
}

// localFailures counts failures in memory: per client host, and per user
// name for when the logins bucket cannot be reached (storage read-only or
// electing a leader). It holds at most limit keys: when full it forgets
// the records that no longer count, then the oldest.
type localFailures struct {
	policy throttlePolicy
	limit  int

	mu      sync.Mutex
	entries map[string]failures
}

func newLocalFailures(p throttlePolicy, limit int) *localFailures {
	return &localFailures{policy: p, limit: limit, entries: map[string]failures{}}
}

func (l *localFailures) get(key string) failures {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.entries[key]
}

func (l *localFailures) wait(key string, now time.Time) time.Duration {
	return l.policy.wait(l.get(key), now)
}

// failed counts one failure of key at now and returns its record.
func (l *localFailures) failed(key string, now time.Time) failures {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.policy.failed(l.entries[key], now)
	l.store(key, f, now)
	return f
}

// set replaces key's record by f, the shared record while it is readable.
func (l *localFailures) set(key string, f failures, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.policy.current(f, now).Count == 0 {
		delete(l.entries, key)
		return
	}
	l.store(key, f, now)
}

func (l *localFailures) reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.entries, key)
}

// store puts f under key, making room first. Callers hold l.mu.
func (l *localFailures) store(key string, f failures, now time.Time) {
	if _, ok := l.entries[key]; !ok && len(l.entries) >= l.limit {
		for k, e := range l.entries {
			if l.policy.current(e, now).Count == 0 {
				delete(l.entries, k)
			}
		}
		for len(l.entries) >= l.limit {
			oldest, first := "", true
			for k, e := range l.entries {
				if first || e.Last.Before(l.entries[oldest].Last) {
					oldest, first = k, false
				}
			}
			delete(l.entries, oldest)
		}
	}
	l.entries[key] = f
}

// loginThrottle is a server's part of the throttle.
type loginThrottle struct {
	user  throttlePolicy
	host  throttlePolicy
	users *localFailures // by failureKey, for when the bucket is out of reach
	hosts *localFailures // by client host
	// now is the throttle's clock: time.Now, but for tests that must not
	// depend on how long a bcrypt check takes on a loaded machine.
	now func() time.Time
}

func newLoginThrottle(cfg Config) *loginThrottle {
	u := userPolicy(cfg)
	h := hostPolicy(u)
	return &loginThrottle{user: u, host: h, users: newLocalFailures(u, localEntries), hosts: newLocalFailures(h, localEntries), now: time.Now}
}

// failureKey is the bucket key of a user name as typed: a digest, because
// a typed name may be anything (even a password typed in the wrong field)
// and a key may hold only a few kinds of characters.
func failureKey(name string) string {
	sum := sha256.Sum256([]byte("ftfs login\x00" + name))
	return hex.EncodeToString(sum[:])
}

// loginAttempt is one password check.
type loginAttempt struct {
	via      string // "connect" (auth callout) or "login" (Login endpoint)
	user     string // as typed
	password string
	host     string // the client's address, when the broker told it
}

// auditAttrs describe the attempt in the audit log: never the password.
func (a loginAttempt) auditAttrs(more ...any) []any {
	attrs := []any{"user", typedName(a.user), "via", a.via}
	if a.host != "" {
		attrs = append(attrs, "host", a.host)
	}
	return append(attrs, more...)
}

// typedName bounds a user name as typed for the log.
func typedName(name string) string {
	const maxLogged = 64
	if len(name) > maxLogged {
		return name[:maxLogged] + "..."
	}
	return name
}

// passwordLogin checks a user name and password through the throttle.
// Unknown names and wrong passwords cost the same: a read of the count,
// the bcrypt work of checkPassword and a write of the count.
func (s *Server) passwordLogin(ctx context.Context, a loginAttempt) (userRecord, error) {
	th := s.throttle
	key := failureKey(a.user)
	now := th.now()
	f, sharedErr := s.loadFailures(ctx, key)
	if sharedErr == nil {
		th.users.set(key, f, now)
	} else {
		f = th.users.get(key) // the bucket's last word, and failures since
	}
	userWait := th.user.wait(f, now)
	var hostWait time.Duration
	if a.host != "" {
		hostWait = th.hosts.wait(a.host, now)
	}
	if wait := max(userWait, hostWait); wait > 0 {
		s.countLoginFailure(a.via, true)
		s.audit("login throttled", a.auditAttrs("retry_in", wait.Round(time.Millisecond),
			"locked", th.user.locked(f, now), "by_host", hostWait > userWait)...)
		return userRecord{}, errThrottled(wait)
	}

	u, err := s.checkPassword(ctx, a.user, a.password)
	if subjects.CodeOf(err) == subjects.CodeUnauthorized {
		s.countLoginFailure(a.via, false)
		n := s.loginFailed(ctx, key, a.host)
		s.audit("login failed", a.auditAttrs("failures", n.Count)...)
		return u, err
	}
	if err != nil {
		return u, err
	}
	// A success clears the name's count, not the host's: an attacker
	// who knows one password must not wipe the record of their guesses.
	if sharedErr == nil && th.user.current(f, now).Count > 0 {
		if err := s.clearFailures(ctx, key); err != nil {
			s.log.Warn("login throttle: could not clear failures", "user", u.Name, "err", err)
		}
	}
	th.users.reset(key)
	s.audit("login", a.auditAttrs()...)
	return u, nil
}

// loginFailed counts a failure of the name keyed key and of host (when
// known), and returns the name's record.
func (s *Server) loginFailed(ctx context.Context, key, host string) failures {
	th := s.throttle
	now := th.now()
	if host != "" {
		th.hosts.failed(host, now)
	}
	f, err := s.recordFailure(ctx, key, now)
	if err != nil {
		s.log.Warn("login throttle: failure counted on this server only", "err", err)
		return th.users.failed(key, now)
	}
	th.users.set(key, f, now)
	return f
}

// errNoThrottleStore: storage is read-only; the in-memory count stands in.
var errNoThrottleStore = errors.New("logins bucket read-only")

// loadFailures reads the shared record of a name.
func (s *Server) loadFailures(ctx context.Context, key string) (failures, error) {
	f, _, err := s.getFailures(ctx, key)
	return f, err
}

func (s *Server) getFailures(ctx context.Context, key string) (failures, uint64, error) {
	var f failures
	if s.store.ReadOnly() {
		return f, 0, errNoThrottleStore
	}
	ctx, cancel := context.WithTimeout(ctx, throttleStorage)
	defer cancel()
	e, err := s.store.KVGetOnce(ctx, s.logins, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return f, 0, nil
	}
	if err != nil {
		return f, 0, err
	}
	if err := json.Unmarshal(e.Value(), &f); err != nil {
		// Rewritten by the next failure; until then it counts for none.
		return failures{}, e.Revision(), nil
	}
	return f, e.Revision(), nil
}

// recordFailure adds a failure at now to the shared record, compare and
// set: two servers counting at once both count.
func (s *Server) recordFailure(ctx context.Context, key string, now time.Time) (failures, error) {
	for attempt := 0; ; attempt++ {
		f, rev, err := s.getFailures(ctx, key)
		if err != nil {
			return f, err
		}
		next := s.throttle.user.failed(f, now)
		b, err := json.Marshal(next)
		if err != nil {
			return f, err
		}
		wctx, cancel := context.WithTimeout(ctx, throttleStorage)
		if rev == 0 {
			_, err = s.store.KVCreateOnce(wctx, s.logins, key, b)
		} else {
			_, err = s.store.KVUpdateOnce(wctx, s.logins, key, b, rev)
		}
		cancel()
		if err == nil {
			return next, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) || attempt >= 4 {
			return f, err
		}
	}
}

// clearFailures forgets a name's failures after a successful login.
func (s *Server) clearFailures(ctx context.Context, key string) error {
	if s.store.ReadOnly() {
		return errNoThrottleStore
	}
	ctx, cancel := context.WithTimeout(ctx, throttleStorage)
	defer cancel()
	return s.store.KVPurgeOnce(ctx, s.logins, key)
}
