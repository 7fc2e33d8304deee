package fileserver

// Access rules (subjects/access.go has their syntax). Every stored rule
// and group lives in one key of the access bucket, which every request
// that names a file reads once, through readKV: a change made on any
// server is seen by the next request on every server, and while storage
// is read-only the bucket's mirror answers. The parsed form is kept for
// as long as the stored bytes stay the same.
//
// Resolution: the rule of the nearest folder at or above a file's folder
// decides alone (no merging). Where nothing is stored, built-in rules
// apply: the root lets every user read, list and add files (and change
// their own); HomeRoot is nobody's; each home folder is its user's alone.
// A site admin (userRecord.Admin) passes every check. The admin right is
// the one exception to "nearest alone": it counts at its folder and every
// folder below, so that whoever runs a folder can always change the rules
// inside it.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ftfs/ftfs/internal/store"
	"github.com/ftfs/ftfs/subjects"
)

// rights is a set of the rights a rule gives (subjects.AccessRights).
type rights uint8

const (
	mayRead rights = 1 << iota
	mayListName
	mayWrite
	mayDelete
	mayAdmin

	allRights = mayRead | mayListName | mayWrite | mayDelete | mayAdmin
)

var rightBits = map[string]rights{
	subjects.RightRead:   mayRead,
	subjects.RightList:   mayListName,
	subjects.RightWrite:  mayWrite,
	subjects.RightDelete: mayDelete,
	subjects.RightAdmin:  mayAdmin,
}

// names are the rights in r, in subjects.AccessRights' order.
func (r rights) names() []string {
	out := []string{}
	for _, n := range subjects.AccessRights {
		if r&rightBits[n] != 0 {
			out = append(out, n)
		}
	}
	return out
}

// accessRecord is the access bucket's one key, subjects.AccessKey.
type accessRecord struct {
	Rules  map[string]storedRule `json:"rules,omitempty"`  // by prefix
	Groups map[string][]string   `json:"groups,omitempty"` // users, sorted
	// Updated and By make every write's bytes unique, which a write
	// whose answer was lost relies on (store.Store.KVUpdate).
	Updated time.Time `json:"updated"`
	By      string    `json:"by"`
}

// storedRule is one folder's rule as stored: its lines as
// subjects.AccessLine writes them.
type storedRule struct {
	Lines   []string  `json:"lines"`
	Updated time.Time `json:"updated"`
	By      string    `json:"by"`
}

// accessLine is a parsed line of a rule.
type accessLine struct {
	rights  rights
	members []string
}

// accessPolicy is an access record, parsed.
type accessPolicy struct {
	rec    accessRecord
	rules  map[string][]accessLine
	groups map[string]map[string]bool
}

func parsePolicy(raw []byte) (*accessPolicy, error) {
	var rec accessRecord
	if raw != nil {
		if err := json.Unmarshal(raw, &rec); err != nil {
			return nil, fmt.Errorf("access record: %w", err)
		}
	}
	return policyOf(rec)
}

func policyOf(rec accessRecord) (*accessPolicy, error) {
	p := &accessPolicy{rec: rec, rules: map[string][]accessLine{}, groups: map[string]map[string]bool{}}
	for prefix, r := range p.rec.Rules {
		if err := subjects.ValidAccessPrefix(prefix); err != nil {
			return nil, fmt.Errorf("access record: %w", err)
		}
		lines, err := subjects.ParseAccessRule(r.Lines)
		if err != nil {
			return nil, fmt.Errorf("access record: rule of %q: %w", prefix, err)
		}
		p.rules[prefix] = toAccessLines(lines)
	}
	for g, users := range p.rec.Groups {
		set := make(map[string]bool, len(users))
		for _, u := range users {
			set[u] = true
		}
		p.groups[g] = set
	}
	return p, nil
}

func toAccessLines(lines []subjects.AccessLine) []accessLine {
	out := make([]accessLine, len(lines))
	for i, l := range lines {
		for _, r := range l.Rights {
			out[i].rights |= rightBits[r]
		}
		out[i].members = l.Members
	}
	return out
}

// builtinRule is the rule a folder has when none is stored there; ok is
// false for a folder without one, which inherits.
func builtinRule(prefix string) (lines []accessLine, ok bool) {
	switch {
	case prefix == "":
		return []accessLine{{mayRead | mayListName | mayWrite, []string{subjects.AccessEveryone}}}, true
	case prefix == subjects.HomeRoot:
		return nil, true // site admins only
	}
	if user, ok := strings.CutPrefix(prefix, subjects.HomeRoot); ok && strings.Count(user, "/") == 1 {
		return []accessLine{{allRights, []string{strings.TrimSuffix(user, "/")}}}, true
	}
	return nil, false
}

// ruleAt is the rule a folder has itself, stored or built in; ok is false
// when it inherits.
func (p *accessPolicy) ruleAt(prefix string) (lines []accessLine, builtin, ok bool) {
	if lines, ok := p.rules[prefix]; ok {
		return lines, false, true
	}
	lines, ok = builtinRule(prefix)
	return lines, true, ok
}

// governing is the rule that decides in folder: the folder's own or its
// nearest parent's, and the folder it belongs to. The root always has one.
func (p *accessPolicy) governing(folder string) (prefix string, lines []accessLine, builtin bool) {
	for prefix := folder; ; {
		if lines, builtin, ok := p.ruleAt(prefix); ok {
			return prefix, lines, builtin
		}
		parent, ok := subjects.ParentFolder(prefix)
		if !ok {
			return "", nil, false // unreachable: the root has a rule
		}
		prefix = parent
	}
}

// rightsIn are the rights lines give user.
func (p *accessPolicy) rightsIn(lines []accessLine, user string) rights {
	var r rights
	for _, l := range lines {
		if r&l.rights == l.rights {
			continue
		}
		for _, m := range l.members {
			if m == user || m == subjects.AccessEveryone || p.inGroup(m, user) {
				r |= l.rights
				break
			}
		}
	}
	return r
}

func (p *accessPolicy) inGroup(member, user string) bool {
	g, ok := strings.CutPrefix(member, subjects.GroupMark)
	return ok && p.groups[g][user]
}

// rightsAt are the rights user has in folder.
func (p *accessPolicy) rightsAt(folder, user string) rights {
	_, lines, _ := p.governing(folder)
	return p.rightsIn(lines, user)
}

// adminAt says whether user may set or remove the rule of folder: a rule
// at the folder or any folder above gives them the admin right.
func (p *accessPolicy) adminAt(folder, user string) bool {
	for prefix := folder; ; {
		if lines, _, ok := p.ruleAt(prefix); ok && p.rightsIn(lines, user)&mayAdmin != 0 {
			return true
		}
		parent, ok := subjects.ParentFolder(prefix)
		if !ok {
			return false
		}
		prefix = parent
	}
}

// policyCache keeps the policy parsed from the access record's bytes.
type policyCache struct {
	mu     sync.Mutex
	raw    []byte
	parsed *accessPolicy
}

func (pc *policyCache) get(raw []byte) (*accessPolicy, error) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.parsed != nil && bytes.Equal(pc.raw, raw) {
		return pc.parsed, nil
	}
	p, err := parsePolicy(raw)
	if err != nil {
		return nil, err
	}
	pc.raw, pc.parsed = raw, p
	return p, nil
}

// recordRead is what a read of the access record found.
type recordRead struct {
	raw []byte // nil when no record is stored
	rev uint64 // the revision the bucket's leader gave; 0 if it did not answer
	// mirrored says the bucket's mirror answered, storage being unable
	// to (its stream without a leader, or read-only: readKV).
	mirrored bool
}

// readAccessRecord reads the access record as it stands now (readKV:
// from the mirror while storage cannot answer).
func (s *Server) readAccessRecord(ctx context.Context) (recordRead, error) {
	raw, rev, err := s.readKVRevision(ctx, s.access, s.accessMirror, subjects.AccessKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		if s.store.ReadOnly() && !s.accessMirror.loaded.Load() {
			// The built-in rules would stand in for stored ones, some
			// of them stricter: say nothing rather than the wrong thing.
			return recordRead{}, subjects.Errorf(subjects.CodeUnavailable, "access rules not loaded yet while storage is read-only; try again")
		}
		return recordRead{}, nil
	}
	if err != nil {
		return recordRead{}, wrapStorage("read access rules", err)
	}
	return recordRead{raw: raw, rev: rev, mirrored: rev == 0}, nil
}

// ensureAccessRecord stores an access record without rules when none is
// stored, as a server starts. Every request reads the record, and while
// its stream elects a leader (a broker died) the bucket's mirror answers
// for it; but a mirror cannot tell a record that is absent from one
// written a moment ago it has not seen, so without a stored record every
// request would wait out the election.
func (s *Server) ensureAccessRecord(ctx context.Context) error {
	return store.RetryStartup(ctx, s.log, "store the access record", func(ctx context.Context) error {
		b, err := json.Marshal(accessRecord{Updated: time.Now().UTC(), By: "first start"})
		if err != nil {
			return err
		}
		_, err = s.store.KVCreate(ctx, s.access, subjects.AccessKey, b)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return nil // stored already, by the other server or an earlier start
		}
		return err
	})
}

// accessRead is one read of the access record, shared by every request
// that waits for it.
type accessRead struct {
	done chan struct{}
	raw  []byte
	err  error
}

// Every request reads the access record, and a rule changed before a
// request arrived must count for it. Read from storage each time, that
// is a round trip to the bucket's leader per request, and small files'
// puts, gets and deletes slowed by a sixth to a quarter; accessReads
// keeps the rule without most of them, in two ways.
//
// A read from storage that began after a request arrived will do for it,
// so requests that arrive while a read is in flight share the one that
// starts when it ends. But when storage could not answer the read in
// flight and the mirror did (readKV: a stream electing its leader, or
// read-only), those requests came while nothing could be written: the
// mirror's answer is theirs too, rather than a second wait for a leader.
//
// And a read that finds the bucket's mirror at its revision or later
// grants a lease: for accessLease from the moment the read began, the
// mirror answers with no read at all. A change of the rules made after
// the read began cannot be missed by it, because whoever changes the
// rules waits out accessLease before saying it is done (accessChanged):
// by then every lease granted before the change has ended, and any read
// that begins later sees the change, so its lease holds only once the
// mirror has it too. The mirror only moves forward (mirror.apply).
type accessReads struct {
	read   func(ctx context.Context) (recordRead, error)
	mirror *mirror
	wg     *sync.WaitGroup // the server's, which owns the reading goroutine

	mu         sync.Mutex
	running    bool        // a read is in flight
	next       *accessRead // the read that starts when it ends, if any waits
	leaseUntil time.Time   // the mirror answers until then
}

// accessLease is how long a read of the access record lets the mirror
// answer for it; a change of the rules waits this long (and a little
// more) before its reply.
const accessLease = 500 * time.Millisecond

// join returns a read of the access record that is current as of this
// call. The caller must hold a count of wg (a request handler does), so
// that the Add cannot race the server's final Wait.
func (a *accessReads) join(ctx context.Context) *accessRead {
	a.mu.Lock()
	defer a.mu.Unlock()
	if time.Now().Before(a.leaseUntil) {
		if raw, _, ok := a.mirror.getRevision(subjects.AccessKey); ok {
			r := &accessRead{done: make(chan struct{}), raw: raw}
			close(r.done)
			return r
		}
	}
	if a.next != nil {
		return a.next
	}
	r := &accessRead{done: make(chan struct{})}
	if a.running {
		a.next = r
		return r
	}
	a.running = true
	a.wg.Add(1)
	go a.run(ctx, r) // owned by wg; ends with ctx at the latest
	return r
}

// run makes read r, then the one that waited for it, until none waits.
func (a *accessReads) run(ctx context.Context, r *accessRead) {
	defer a.wg.Done()
	for r != nil {
		began := time.Now()
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		got, err := a.read(rctx)
		cancel()
		a.mu.Lock()
		if _, mrev, ok := a.mirror.getRevision(subjects.AccessKey); err == nil && got.rev > 0 && ok && mrev >= got.rev {
			a.leaseUntil = began.Add(accessLease)
		}
		a.mu.Unlock()
		r.raw, r.err = got.raw, err
		close(r.done)
		a.mu.Lock()
		r, a.next = a.next, nil
		if r != nil && err == nil && got.mirrored {
			r.raw = got.raw
			close(r.done)
			r = nil
		}
		a.running = r != nil
		a.mu.Unlock()
	}
}

// accessChanged waits until no lease granted before a change of the
// access record just stored can still be answering (accessReads).
func accessChanged(ctx context.Context) error {
	select {
	case <-time.After(accessLease + accessLease/10):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startAccessRead joins a read of the access record for a request that
// is arriving now (authed starts it alongside the session's read).
func (s *Server) startAccessRead() *accessRead {
	return s.accessReads.join(s.ctx)
}

// loadPolicy is the access record as of this call's arrival: the read
// started as it arrived, or one that begins now.
func (s *Server) loadPolicy(c *call) (*accessPolicy, error) {
	r := c.accessRead
	if r == nil {
		r = s.startAccessRead()
	}
	select {
	case <-r.done:
	case <-c.ctx.Done():
		return nil, wrapStorage("read access rules", c.ctx.Err())
	}
	if r.err != nil {
		return nil, r.err
	}
	return s.policies.get(r.raw)
}

// accessView is what one call's user may do, read once per call.
type accessView struct {
	p         *accessPolicy
	user      string
	siteAdmin bool
	folders   map[string]rights // rightsAt, by folder
}

// accessOf is the call's view of the access rules, read on first use.
func (s *Server) accessOf(c *call) (*accessView, error) {
	if c.access != nil {
		return c.access, nil
	}
	v := &accessView{user: c.user, siteAdmin: c.admin, folders: map[string]rights{}}
	if !c.admin {
		p, err := s.loadPolicy(c)
		if err != nil {
			return nil, err
		}
		v.p = p
	}
	c.access = v
	return v, nil
}

// rights are what the view's user may do to the file name (or in the
// folder name, ending in "/").
func (v *accessView) rights(name string) rights {
	if v.siteAdmin {
		return allRights
	}
	folder := subjects.AccessFolder(name)
	r, ok := v.folders[folder]
	if !ok {
		r = v.p.rightsAt(folder, v.user)
		v.folders[folder] = r
	}
	return r
}

// visible says whether name may appear in the user's listings; nil when
// everything may.
func (v *accessView) visible() func(name string) bool {
	if v.siteAdmin {
		return nil
	}
	return func(name string) bool { return v.rights(name)&mayListName != 0 }
}

// mayList says whether the call's user may see name: in a listing, a
// watch's events, or a stat. For features that show names outside the
// file requests (watches, share links); a failure to read the rules is
// logged and refuses.
func (s *Server) mayList(c *call, name string) bool {
	return s.allowed(c, name, mayListName|mayRead)
}

// mayRead says whether the call's user may read name's content; as
// mayList for a failure to read the rules.
func (s *Server) mayRead(c *call, name string) bool {
	return s.allowed(c, name, mayRead)
}

// mayWrite says whether the call's user may add the file name, or files
// in the folder name (ending in "/"): an upload-only link's check. As
// mayList for a failure to read the rules.
func (s *Server) mayWrite(c *call, name string) bool {
	return s.allowed(c, name, mayWrite)
}

func (s *Server) allowed(c *call, name string, anyOf rights) bool {
	v, err := s.accessOf(c)
	if err != nil {
		s.log.Warn("access rules unreadable; refusing", "user", c.user, "err", err)
		return false
	}
	return v.rights(name)&anyOf != 0
}

// needAccess refuses the call unless its user has one of anyOf on name.
// It is asked before the file is looked up, so that a refusal tells
// nothing of whether the name exists.
func (s *Server) needAccess(c *call, name string, anyOf rights, doing string) error {
	v, err := s.accessOf(c)
	if err != nil {
		return err
	}
	if v.rights(name)&anyOf != 0 {
		return nil
	}
	return subjects.Errorf(subjects.CodeForbidden, "you may not %s %q: the access rule of its folder does not let you (ftfs access show %s)", doing, name, name)
}

// mayReplaceName checks that the call's user may make name hold a new
// version in place of cur: write in its folder, and for a file of
// someone else's the delete right too.
func (s *Server) mayReplaceName(c *call, name string, cur object) error {
	if err := s.needAccess(c, name, mayWrite, "write"); err != nil {
		return err
	}
	if !cur.live() || cur.owner() == c.user || c.admin {
		return nil
	}
	if err := s.needAccess(c, name, mayDelete, "replace another user's file"); err != nil {
		return subjects.Errorf(subjects.CodeForbidden, "%q belongs to %s: only the owner or a user with the delete right may change it", name, cur.owner())
	}
	return nil
}

// mayRemove checks that the call's user may delete o, or rename it away:
// the delete right in its folder, or write and owning it.
func (s *Server) mayRemove(c *call, o object) error {
	name := o.info.Name
	if err := s.needAccess(c, name, mayDelete|mayWrite, "delete"); err != nil {
		return err
	}
	v, _ := s.accessOf(c) // read by needAccess
	if v.rights(name)&mayDelete != 0 || o.owner() == c.user {
		return nil
	}
	return subjects.Errorf(subjects.CodeForbidden, "%q belongs to %s: only the owner or a user with the delete right may change it", name, o.owner())
}

// Managing rules and groups. Every change reads the record, changes it and
// writes it back at the revision read, again on a conflict, so that two
// changes made at once on two servers both count.

// accessChange changes rec, which p parsed; it returns what to audit.
type accessChange func(p *accessPolicy, rec *accessRecord) (audit []any, err error)

// changeAccess applies change to the stored record (see accessChange).
func (s *Server) changeAccess(c *call, what string, change accessChange) error {
	for attempt := 0; ; attempt++ {
		var raw []byte
		var rev uint64
		e, err := s.store.KVGet(c.ctx, s.access, subjects.AccessKey)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return wrapStorage("read access rules", err)
		default:
			raw, rev = e.Value(), e.Revision()
		}
		p, err := parsePolicy(raw)
		if err != nil {
			return err
		}
		rec := p.rec
		rec.Rules = maps.Clone(rec.Rules)
		rec.Groups = maps.Clone(rec.Groups)
		if rec.Rules == nil {
			rec.Rules = map[string]storedRule{}
		}
		if rec.Groups == nil {
			rec.Groups = map[string][]string{}
		}
		audit, err := change(p, &rec)
		if err != nil {
			return err
		}
		rec.Updated, rec.By = time.Now().UTC(), c.user
		b, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		if len(b) > subjects.MaxAccessRecord {
			return subjects.Errorf(subjects.CodeTooLarge, "%s: the access rules and groups would take %d bytes; the limit is %d (use groups, remove rules)", what, len(b), subjects.MaxAccessRecord)
		}
		if err := s.stillClaimed(c); err != nil {
			return err
		}
		if rev == 0 {
			_, err = s.store.KVCreate(c.ctx, s.access, subjects.AccessKey, b)
		} else {
			_, err = s.store.KVUpdate(c.ctx, s.access, subjects.AccessKey, b, rev)
		}
		if (errors.Is(err, jetstream.ErrKeyExists) || store.WrongLastSequence(err)) && attempt < 5 {
			continue // changed meanwhile: apply the change to what is there now
		}
		if err != nil {
			return wrapStorage(what, err)
		}
		s.audit(what, append(audit, "by", c.user)...)
		if err := accessChanged(c.ctx); err != nil {
			return wrapStorage(what, err)
		}
		return nil
	}
}

func (s *Server) accessSet(c *call) (any, error) {
	r, err := decodeCall[subjects.AccessSetRequest](c)
	if err != nil {
		return nil, err
	}
	parsed, err := subjects.ParseAccessRule(r.Lines) // Validate passed it
	if err != nil {
		return nil, err
	}
	lines := make([]string, len(parsed))
	for i, l := range parsed {
		lines[i] = l.String()
		for _, m := range l.Members {
			if m == subjects.AccessEveryone || strings.HasPrefix(m, subjects.GroupMark) {
				continue
			}
			if _, err := s.getUser(c.ctx, m); err != nil {
				if subjects.CodeOf(err) == subjects.CodeNotFound {
					return nil, subjects.Rejectf(subjects.CodeInvalid, subjects.ReasonAccessMember, "access rule line %q: no user %q", lines[i], m)
				}
				return nil, err
			}
		}
	}
	stored := storedRule{Lines: lines, Updated: time.Now().UTC(), By: c.user}
	err = s.changeAccess(c, "access rule set", func(p *accessPolicy, rec *accessRecord) ([]any, error) {
		if !c.admin && !p.adminAt(r.Prefix, c.user) {
			return nil, subjects.Errorf(subjects.CodeForbidden, "you may not set the rule of %s: that takes the admin right there or in a folder above", folderName(r.Prefix))
		}
		for _, l := range parsed {
			for _, m := range l.Members {
				if g, ok := strings.CutPrefix(m, subjects.GroupMark); ok {
					if _, ok := rec.Groups[g]; !ok {
						return nil, subjects.Rejectf(subjects.CodeInvalid, subjects.ReasonAccessMember, "access rule: no group %q (an admin creates it: ftfs group add %s USER...)", g, g)
					}
				}
			}
		}
		rec.Rules[r.Prefix] = stored
		if !c.admin {
			after, err := policyOf(*rec)
			if err != nil {
				return nil, err
			}
			if !after.adminAt(r.Prefix, c.user) {
				return nil, subjects.Errorf(subjects.CodeForbidden, "this rule would take your own admin right at %s away, and only a site admin could give it back: give yourself admin in it", folderName(r.Prefix))
			}
		}
		return []any{"prefix", r.Prefix, "rule", strings.Join(lines, "; ")}, nil
	})
	if err != nil {
		return nil, err
	}
	return subjects.AccessRule{Prefix: r.Prefix, Lines: lines, Updated: stored.Updated, By: c.user}, nil
}

func (s *Server) accessRemove(c *call) (any, error) {
	r, err := decodeCall[subjects.AccessPrefixRequest](c)
	if err != nil {
		return nil, err
	}
	// No guard against losing one's own admin right here, unlike set:
	// handing a folder back to its parent's rule is what removing means.
	err = s.changeAccess(c, "access rule removed", func(p *accessPolicy, rec *accessRecord) ([]any, error) {
		if !c.admin && !p.adminAt(r.Prefix, c.user) {
			return nil, subjects.Errorf(subjects.CodeForbidden, "you may not remove the rule of %s: that takes the admin right there or in a folder above", folderName(r.Prefix))
		}
		if _, ok := rec.Rules[r.Prefix]; !ok {
			return nil, subjects.Errorf(subjects.CodeNotFound, "no rule is stored at %s (ftfs access ls lists them)", folderName(r.Prefix))
		}
		delete(rec.Rules, r.Prefix)
		return []any{"prefix", r.Prefix}, nil
	})
	return nil, err
}

func (s *Server) accessShow(c *call) (any, error) {
	r, err := decodeCall[subjects.AccessShowRequest](c)
	if err != nil {
		return nil, err
	}
	p, err := s.loadPolicy(c)
	if err != nil {
		return nil, err
	}
	prefix, lines, builtin := p.governing(subjects.AccessFolder(r.Path))
	have := p.rightsIn(lines, c.user)
	if c.admin {
		have = allRights
	} else if have == 0 && !p.adminAt(prefix, c.user) {
		// The rule names users and groups: only those it concerns see it.
		return nil, subjects.Errorf(subjects.CodeForbidden, "you have no rights at %q", r.Path)
	}
	rule := subjects.AccessRule{Prefix: prefix, Lines: linesOf(lines), Builtin: builtin}
	if st, ok := p.rec.Rules[prefix]; ok {
		rule.Updated, rule.By = st.Updated, st.By
	}
	return subjects.AccessShowReply{Path: r.Path, Rule: rule, Rights: have.names(), SiteAdmin: c.admin}, nil
}

// linesOf writes parsed lines back as text.
func linesOf(lines []accessLine) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = subjects.AccessLine{Rights: l.rights.names(), Members: l.members}.String()
	}
	return out
}

func (s *Server) accessList(c *call) (any, error) {
	if _, err := decodeCall[subjects.Empty](c); err != nil {
		return nil, err
	}
	p, err := s.loadPolicy(c)
	if err != nil {
		return nil, err
	}
	reply := subjects.AccessListReply{Rules: []subjects.AccessRule{}}
	for _, prefix := range slices.Sorted(maps.Keys(p.rec.Rules)) {
		if !c.admin && p.rightsIn(p.rules[prefix], c.user) == 0 && !p.adminAt(prefix, c.user) {
			continue
		}
		st := p.rec.Rules[prefix]
		reply.Rules = append(reply.Rules, subjects.AccessRule{Prefix: prefix, Lines: st.Lines, Updated: st.Updated, By: st.By})
	}
	return reply, nil
}

func (s *Server) groupAdd(c *call) (any, error) {
	r, err := decodeCall[subjects.GroupRequest](c)
	if err != nil {
		return nil, err
	}
	if len(r.Users) == 0 {
		return nil, subjects.Rejectf(subjects.CodeInvalid, subjects.ReasonMissingField, "malformed request: missing field %q: name the users to add to group %q", "users", r.Group)
	}
	for _, u := range r.Users {
		if _, err := s.getUser(c.ctx, u); err != nil {
			return nil, err
		}
	}
	var info subjects.GroupInfo
	err = s.changeAccess(c, "group members added", func(_ *accessPolicy, rec *accessRecord) ([]any, error) {
		users := slices.Clone(rec.Groups[r.Group])
		for _, u := range r.Users {
			if !slices.Contains(users, u) {
				users = append(users, u)
			}
		}
		if len(users) > subjects.MaxGroupUsers {
			return nil, subjects.Errorf(subjects.CodeTooLarge, "group %q would hold %d users; the limit is %d", r.Group, len(users), subjects.MaxGroupUsers)
		}
		slices.Sort(users)
		rec.Groups[r.Group] = users
		info = subjects.GroupInfo{Name: r.Group, Users: users}
		return []any{"group", r.Group, "users", strings.Join(r.Users, ",")}, nil
	})
	if err != nil {
		return nil, err
	}
	return info, nil
}

func (s *Server) groupRemove(c *call) (any, error) {
	r, err := decodeCall[subjects.GroupRequest](c)
	if err != nil {
		return nil, err
	}
	what := "group members removed"
	if len(r.Users) == 0 {
		what = "group removed"
	}
	err = s.changeAccess(c, what, func(_ *accessPolicy, rec *accessRecord) ([]any, error) {
		users, ok := rec.Groups[r.Group]
		if !ok {
			return nil, subjects.Errorf(subjects.CodeNotFound, "no group %q", r.Group)
		}
		if len(r.Users) == 0 {
			delete(rec.Groups, r.Group)
			return []any{"group", r.Group}, nil
		}
		for _, u := range r.Users {
			if !slices.Contains(users, u) {
				return nil, subjects.Errorf(subjects.CodeNotFound, "user %q is not in group %q", u, r.Group)
			}
		}
		rec.Groups[r.Group] = slices.DeleteFunc(slices.Clone(users), func(u string) bool { return slices.Contains(r.Users, u) })
		return []any{"group", r.Group, "users", strings.Join(r.Users, ",")}, nil
	})
	return nil, err
}

// leaveGroups takes user out of every group (userRemove); nothing is
// written when user is in none.
func (s *Server) leaveGroups(c *call, user string) error {
	p, err := s.loadPolicy(c)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(slices.Collect(maps.Values(p.rec.Groups)), func(users []string) bool { return slices.Contains(users, user) }) {
		return nil
	}
	return s.changeAccess(c, "user left groups", func(_ *accessPolicy, rec *accessRecord) ([]any, error) {
		var left []string
		for _, g := range slices.Sorted(maps.Keys(rec.Groups)) {
			if slices.Contains(rec.Groups[g], user) {
				rec.Groups[g] = slices.DeleteFunc(slices.Clone(rec.Groups[g]), func(u string) bool { return u == user })
				left = append(left, g)
			}
		}
		return []any{"user", user, "groups", strings.Join(left, ",")}, nil
	})
}

func (s *Server) groupList(c *call) (any, error) {
	r, err := decodeCall[subjects.GroupListRequest](c)
	if err != nil {
		return nil, err
	}
	p, err := s.loadPolicy(c)
	if err != nil {
		return nil, err
	}
	reply := subjects.GroupListReply{Groups: []subjects.GroupInfo{}}
	if r.Group != "" {
		users, ok := p.rec.Groups[r.Group]
		switch {
		case !ok && c.admin:
			return nil, subjects.Errorf(subjects.CodeNotFound, "no group %q", r.Group)
		case !c.admin && !p.groups[r.Group][c.user]:
			// The same answer whether it exists or not.
			return nil, subjects.Errorf(subjects.CodeForbidden, "only its members and admins see group %q", r.Group)
		}
		reply.Groups = append(reply.Groups, subjects.GroupInfo{Name: r.Group, Users: nonNil(users)})
		return reply, nil
	}
	for _, g := range slices.Sorted(maps.Keys(p.rec.Groups)) {
		if c.admin || p.groups[g][c.user] {
			reply.Groups = append(reply.Groups, subjects.GroupInfo{Name: g, Users: nonNil(p.rec.Groups[g])})
		}
	}
	return reply, nil
}

func nonNil(users []string) []string {
	if users == nil {
		return []string{}
	}
	return users
}

// folderName names a prefix for a message: the root has no name.
func folderName(prefix string) string {
	if prefix == "" {
		return "the root"
	}
	return fmt.Sprintf("%q", prefix)
}
