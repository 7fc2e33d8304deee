package subjects

import "time"

// Watch is a long poll for the changes of the files bucket: any server
// answers it from the stream sequence the client last saw, so a watch
// survives the death of the server or broker that held it by asking again.
const Watch = userPrefix + ".watch"

// WatchRequest asks for the changes of names starting with Prefix stored
// after stream sequence After (0: every change storage keeps). With Now it
// asks where "now" is: the answer comes at once, with no events and the
// Next to start from (0 when storage holds no change yet: a separate flag,
// so that After 0 keeps one meaning). When no change is there yet the
// server holds the request up to Wait (nanoseconds, at most MaxWatchWait;
// 0: answer at once), sending keepalives, and answers as soon as one is.
// Max bounds the events of the reply (0 or more than MaxWatchEvents:
// MaxWatchEvents).
type WatchRequest struct {
	Prefix string        `json:"prefix,omitempty"`
	After  uint64        `json:"after,omitempty"`
	Now    bool          `json:"now,omitempty"`
	Wait   time.Duration `json:"wait,omitempty"`
	Max    int           `json:"max,omitempty"`
}

// Validate: a prefix is at most a name's length; wait and max are not
// negative.
func (r WatchRequest) Validate() error {
	if len(r.Prefix) > MaxNameLen {
		return Rejectf(CodeInvalid, ReasonNameTooLong, "malformed request: prefix of %d bytes, more than %d", len(r.Prefix), MaxNameLen)
	}
	if err := notNegative("wait", int64(r.Wait)); err != nil {
		return err
	}
	return notNegative("max", int64(r.Max))
}

// Bounds of a watch request.
const (
	// MaxWatchWait bounds how long a server holds a watch with nothing
	// new: well under the servers' request budget, so that the answer
	// always leaves, and short enough that a server stopping answers.
	MaxWatchWait = 10 * time.Second
	// MaxWatchEvents bounds the events of one WatchReply.
	MaxWatchEvents = 1000
)

// WatchReply is the next changes of a watch, in stream order, and Next:
// the After of the next request (every change up to it has been looked
// at, whether or not it matched). Compacted says that the server no longer
// held every change after After and read what storage keeps instead: the
// last change of each name since then, so a name changed twice in that
// span shows its last change only.
type WatchReply struct {
	Events    []ChangeEvent `json:"events"`
	Next      uint64        `json:"next"`
	Compacted bool          `json:"compacted,omitempty"`
}

// ChangeOp is what a change did to a name.
type ChangeOp string

// The ops of a change. A rename is one event, at the sequence of its new
// name's meta; its old name's tombstone, written next, shows as nothing.
// When a rename's old name could not be removed (the rename failed after
// storing the new name, and said so), the watcher has seen the rename all
// the same, and sees the old name's next change as usual.
const (
	OpPut    ChangeOp = "put"
	OpDelete ChangeOp = "delete"
	OpRename ChangeOp = "rename"
)

// ChangeEvent is one change of a file. Seq is its stream sequence, the
// cursor a watch resumes after; From is a rename's old name; Size is the
// new content's (0 for a delete); Owner the file's owner; By who made the
// change, when storage records it (a write by another tool does not).
// Compacted marks an event of a compacted reply (WatchReply.Compacted):
// the last change of its name, which may stand for several.
type ChangeEvent struct {
	Seq   uint64    `json:"seq"`
	Op    ChangeOp  `json:"op"`
	Name  string    `json:"name"`
	From  string    `json:"from,omitempty"`
	Size  int64     `json:"size"`
	Owner string    `json:"owner,omitempty"`
	By    string    `json:"by,omitempty"`
	Time  time.Time `json:"time"`

	Compacted bool `json:"compacted,omitempty"`
}
