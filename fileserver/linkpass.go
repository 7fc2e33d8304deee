package fileserver

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"time"
)

// passedLinkPasswords remembers the link passwords this server found
// right, so that a download through a link with a password pays for one
// bcrypt check rather than one per batch of chunks (every 16 MiB): a GiB
// was 64 checks, seconds of a core. Only a right password is remembered,
// so wrong guesses still go through bcrypt and the throttle. It holds no
// password: only a MAC, under a key made at start and kept in memory, of
// the link, its stored hash (a changed password is a new entry) and the
// password. The link itself is still read on every request, so a revoked
// or expired link ends at once.
type passedLinkPasswords struct {
	key []byte

	mu    sync.Mutex
	until map[[sha256.Size]byte]time.Time // MAC -> until when it counts
}

const (
	// linkPasswordRemembered is how long a right password counts without
	// a check: long enough for a download's batches, short enough that a
	// process's memory holds little.
	linkPasswordRemembered = 10 * time.Minute
	// maxPassedLinkPasswords bounds the memory (makeRoom).
	maxPassedLinkPasswords = 4096
)

func newPassedLinkPasswords() *passedLinkPasswords {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // never fails (crypto/rand)
	return &passedLinkPasswords{key: key, until: map[[sha256.Size]byte]time.Time{}}
}

func (p *passedLinkPasswords) mac(rec shareRecord, password string) [sha256.Size]byte {
	h := hmac.New(sha256.New, p.key)
	for _, part := range [][]byte{[]byte(rec.ID), rec.Hash, []byte(password)} {
		// Each part's length first: no two splits of the same bytes collide.
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(part))))
		h.Write(part)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// passed says whether password was found right for rec lately.
func (p *passedLinkPasswords) passed(rec shareRecord, password string, now time.Time) bool {
	m := p.mac(rec, password)
	p.mu.Lock()
	defer p.mu.Unlock()
	until, ok := p.until[m]
	return ok && now.Before(until)
}

// remember records that password is rec's.
func (p *passedLinkPasswords) remember(rec shareRecord, password string, now time.Time) {
	m := p.mac(rec, password)
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.until) >= maxPassedLinkPasswords {
		p.makeRoom(now)
	}
	p.until[m] = now.Add(linkPasswordRemembered)
}

// makeRoom drops what has expired and, if that is not enough, any
// entries down to three quarters of the bound, so that the next inserts
// do not scan again (a dropped entry costs a bcrypt check, nothing more).
func (p *passedLinkPasswords) makeRoom(now time.Time) {
	for m, until := range p.until {
		if !now.Before(until) {
			delete(p.until, m)
		}
	}
	for m := range p.until {
		if len(p.until) <= maxPassedLinkPasswords*3/4 {
			return
		}
		delete(p.until, m)
	}
}
