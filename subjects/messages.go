package subjects

import (
	"encoding/base64"
	"time"
)

// Messages are JSON. The servers read requests with Decode: unknown fields
// are rejected, and so is a request that fails its Validate method, which
// says which fields are required (a required string must not be empty;
// numbers may be left out when 0 is what is meant).

// Empty is the body of requests and replies that carry nothing.
type Empty struct{}

// LoginRequest opens a session.
type LoginRequest struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

// Validate: both are required.
func (r LoginRequest) Validate() error { return require("user", r.User, "password", r.Password) }

// SessionInfo is what login returns; whoami returns it without the token.
type SessionInfo struct {
	User    string    `json:"user"`
	Admin   bool      `json:"admin"`
	Token   string    `json:"token,omitempty"`
	Expires time.Time `json:"expires"`
}

// FileInfo describes one stored file.
type FileInfo struct {
	Name     string    `json:"name"`
	Size     int64     `json:"size"`
	Modified time.Time `json:"modified"`
	Owner    string    `json:"owner"`
	// Digest is "SHA-256=" and the base64url (padded) digest, as the
	// JetStream object store writes it (see Digest).
	Digest string `json:"digest"`
	// Version identifies this content of the file (the object's NUID); it
	// changes on every overwrite.
	Version string `json:"version"`
	Chunks  uint32 `json:"chunks"`
	// Pending is set by a backup answering from its replica dir (storage
	// has lost its quorum) for a file whose change it has seen but not yet
	// copied: it is stored, but the replica cannot serve its content.
	Pending bool `json:"pending,omitempty"`
	// Replica is set on a description served from a backup's replica dir:
	// how far behind storage that replica was. (A ListReply carries it
	// once for the page; the client copies it onto each file.)
	Replica *ReplicaLag `json:"replica,omitempty"`
}

// DigestPrefix starts every digest (FileInfo.Digest): the hash's name.
const DigestPrefix = "SHA-256="

// Digest writes a SHA-256 sum as a FileInfo's Digest holds it:
// DigestPrefix and the sum in padded base64url, as the JetStream object
// store writes it.
func Digest(sum []byte) string {
	return DigestPrefix + base64.URLEncoding.EncodeToString(sum)
}

// ReplicaLag comes with every answer a backup serves from its replica dir
// instead of storage: how far the replica is behind the files bucket, as
// far as it knows. It knows every change whose meta message its watch of
// the bucket has delivered, which it does a moment after the change is
// stored, before it copies the file's content; it cannot know of changes
// made after AsOf.
type ReplicaLag struct {
	// AsOf is when storage was last seen with its quorum (when no write
	// could be made after it): the time the answer is as of.
	AsOf time.Time `json:"as_of"`
	// Pending counts the changes seen and not yet applied: files whose
	// copy is unfinished (listed with Pending).
	Pending int `json:"pending"`
	// Oldest is when the replica saw the oldest of them; zero when none.
	Oldest time.Time `json:"oldest,omitzero"`
}

// NameRequest names one file.
type NameRequest struct {
	Name string `json:"name"`
}

// Validate: the name is required.
func (r NameRequest) Validate() error { return require("name", r.Name) }

// ListRequest asks for up to Limit files whose names start with Prefix and
// sort after After (a page cursor: the last name of the previous page).
type ListRequest struct {
	Prefix string `json:"prefix,omitempty"`
	After  string `json:"after,omitempty"`
	Limit  int    `json:"limit,omitempty"`
}

// Validate: nothing is required; a limit of 0 means MaxListPage.
func (r ListRequest) Validate() error { return notNegative("limit", int64(r.Limit)) }

// ListReply is one page of a listing, sorted by name. More says whether
// another page follows.
type ListReply struct {
	Files []FileInfo `json:"files"`
	More  bool       `json:"more"`
	// Replica is set when the page comes from a backup's replica dir
	// (storage has lost its quorum; ReplicaList): how far behind it is.
	// Files it has seen but not yet copied are listed with Pending.
	Replica *ReplicaLag `json:"replica,omitempty"`
}

// MaxListPage bounds ListRequest.Limit so that a reply stays small.
const MaxListPage = 1000

// RenameRequest renames From to To. Without Overwrite an existing To is a
// conflict.
type RenameRequest struct {
	From      string `json:"from"`
	To        string `json:"to"`
	Overwrite bool   `json:"overwrite,omitempty"`
}

// Validate: both names are required.
func (r RenameRequest) Validate() error { return require("from", r.From, "to", r.To) }

// UploadOpenRequest starts an upload. Size is the announced size or -1 when
// unknown (stdin). Without Overwrite an existing file is a conflict.
type UploadOpenRequest struct {
	Name      string `json:"name"`
	Size      int64  `json:"size"`
	Overwrite bool   `json:"overwrite,omitempty"`
	// Direct asks to publish the chunks into storage over a connection of
	// the upload's own (UploadState.Direct) instead of sending them to a
	// server that stores them.
	Direct bool `json:"direct,omitempty"`
}

// Validate: the name is required; the size is -1 or more.
func (r UploadOpenRequest) Validate() error {
	if err := require("name", r.Name); err != nil {
		return err
	}
	if r.Size < -1 {
		return Rejectf(CodeInvalid, ReasonOutOfRange, "malformed request: size %d: want the size in bytes, or -1 for unknown", r.Size)
	}
	return nil
}

// PutRequest stores a small file in one request (Put): it travels in
// HeaderPut, the content (Size bytes, at most MaxPutSize) in the body. The
// server checks Size and Digest against the body, and stores nothing
// unless both match. Sent again with the same HeaderRequestID, a put that
// got through is answered with the file it stored.
type PutRequest struct {
	Name      string `json:"name"`
	Size      int64  `json:"size"`
	Digest    string `json:"digest"`
	Overwrite bool   `json:"overwrite,omitempty"`
}

// Validate: the name and digest are required; the size is 0 to MaxPutSize.
func (r PutRequest) Validate() error {
	if err := require("name", r.Name, "digest", r.Digest); err != nil {
		return err
	}
	if r.Size < 0 || r.Size > MaxPutSize {
		return Rejectf(CodeInvalid, ReasonOutOfRange, "malformed request: size %d: a put carries 0 to %d bytes; upload larger files", r.Size, MaxPutSize)
	}
	return nil
}

// UploadState tells a client where to send the chunks of an upload and from
// which chunk to go on.
type UploadState struct {
	Upload string `json:"upload"`
	// Instance is the server holding the upload: send chunks to
	// Chunk(Instance). For a direct upload, the server that answered
	// (nobody holds it).
	Instance string `json:"instance"`
	// NextChunk and Offset are the first chunk (and its byte offset) the
	// server has not stored; a resumed upload continues there.
	NextChunk uint32 `json:"next_chunk"`
	Offset    int64  `json:"offset"`
	ChunkSize int    `json:"chunk_size"`
	Window    int    `json:"window"`
	// Direct is set for an upload opened Direct: the client publishes
	// the chunks itself.
	Direct *DirectUpload `json:"direct,omitempty"`
}

// DirectUpload tells a client how to publish the chunks of a direct upload:
// connect with Token (UploadToken), and publish chunk k to Subject as a
// JetStream message with HeaderChunk k, behind fence k mod len(Fences):
// headers Nats-Expected-Last-Subject-Sequence set to that fence's Seq and
// Nats-Expected-Last-Subject-Sequence-Subject to its Subject. A server that
// resumes the upload moves the fences on first, so that no chunk sent
// before can land after; chunks then go behind the fences of its reply.
// The client counts a chunk stored only when JetStream's acks show every
// chunk before it stored at a lower stream sequence; on any failed,
// missing or out-of-order ack it waits for the rest and asks UploadResume,
// which puts the stored chunks in order and says where to go on.
type DirectUpload struct {
	Token   string  `json:"token"`
	Subject string  `json:"subject"`
	Fences  []Fence `json:"fences"`
}

// Fence is one fence subject of a direct upload and the stream sequence its
// last message has (0: none).
type Fence struct {
	Subject string `json:"subject"`
	Seq     uint64 `json:"seq"`
}

// UploadRequest names an upload.
type UploadRequest struct {
	Upload string `json:"upload"`
}

// Validate: the upload is required.
func (r UploadRequest) Validate() error { return require("upload", r.Upload) }

// ChunkAck acknowledges that a chunk is stored: Offset is the upload's size
// after it.
type ChunkAck struct {
	Chunk  uint32 `json:"chunk"`
	Offset int64  `json:"offset"`
}

// UploadCommitRequest makes an upload visible under its name, provided the
// stored bytes have this size and digest.
type UploadCommitRequest struct {
	Upload string `json:"upload"`
	Size   int64  `json:"size"`
	Digest string `json:"digest"`
	// For a direct upload: how many chunks the client stored, and the
	// stream sequence JetStream acknowledged for the last of them.
	Chunks  uint32 `json:"chunks,omitempty"`
	LastSeq uint64 `json:"last_seq,omitempty"`
}

// Validate: the upload and the digest are required, the size is not
// negative. (A size left out is 0: an empty file.)
func (r UploadCommitRequest) Validate() error {
	if err := require("upload", r.Upload, "digest", r.Digest); err != nil {
		return err
	}
	return notNegative("size", r.Size)
}

// DownloadRequest asks for up to Max chunks of Name at Version, starting with
// the first chunk stored at or after stream sequence After+1 (0 for the
// start). The reply is a stream of chunk messages to the request's reply
// subject, ended by a message with status 204; a server error comes back
// instead as a single micro error reply. A replica (ReplicaDownload) ignores
// After and sends ChunkSize pieces from byte Offset, each with HeaderOffset.
// Either way the position must lie within the file: Offset from 0 to its
// size, After below the sequence of the file's meta message (which follows
// every chunk); otherwise the reply is CodeInvalid with ReasonBadOffset.
// Max 0 means DownloadBatch. Seek, with After 0, starts the batch at the
// chunk holding byte Offset instead of the first chunk (a download from
// the middle: an HTTP range, a video's seek), which the server can find
// only when the file's chunks lie next to each other in the stream; when
// they do not, the reply is CodeConflict with ReasonNotContiguous and the
// client reads from the start.
type DownloadRequest struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	After   uint64 `json:"after"`
	Offset  int64  `json:"offset,omitempty"`
	Max     int    `json:"max"`
	Seek    bool   `json:"seek,omitempty"`
}

// Validate: the name and version are required; offset and max are not
// negative. Whether the position lies within the file is for the server to
// say.
func (r DownloadRequest) Validate() error {
	if err := require("name", r.Name, "version", r.Version); err != nil {
		return err
	}
	if r.Offset < 0 {
		return Rejectf(CodeInvalid, ReasonBadOffset, "malformed request: offset %d is negative", r.Offset)
	}
	return notNegative("max", int64(r.Max))
}

// UserRequest creates a user, removes one or changes a password.
type UserRequest struct {
	User     string `json:"user"`
	Password string `json:"password,omitempty"`
	Admin    bool   `json:"admin,omitempty"`
	// Current is the user's present password, which UserPassword needs to
	// change one's own (a session left open must not be enough to take
	// the account over); an admin setting another's needs none.
	Current string `json:"current,omitempty"`
}

// Validate: the user is required, also to change one's own password. (The
// password's rules are ValidPassword's, and removing a user takes none.)
func (r UserRequest) Validate() error { return require("user", r.User) }

// require returns a missing-field error for the first of the (JSON name,
// value) pairs whose value is empty.
func require(nameValues ...string) error {
	for i := 0; i+1 < len(nameValues); i += 2 {
		if nameValues[i+1] == "" {
			return Rejectf(CodeInvalid, ReasonMissingField, "malformed request: missing field %q", nameValues[i])
		}
	}
	return nil
}

// notNegative returns an out-of-range error for a negative field.
func notNegative(name string, v int64) error {
	if v < 0 {
		return Rejectf(CodeInvalid, ReasonOutOfRange, "malformed request: %s %d is negative", name, v)
	}
	return nil
}

// UserInfo describes a user, without secrets.
type UserInfo struct {
	Name    string    `json:"name"`
	Admin   bool      `json:"admin"`
	Created time.Time `json:"created"`
}

// UserListReply lists every user.
type UserListReply struct {
	Users []UserInfo `json:"users"`
}

// StatusReply is one file server's report on itself, its broker and its
// bucket.
type StatusReply struct {
	Instance string    `json:"instance"`
	Role     string    `json:"role"`
	Version  string    `json:"version"`
	Started  time.Time `json:"started"`
	// Errors counts the error replies this instance has sent.
	Errors uint64 `json:"errors"`
	// Broker is the broker this server is connected to.
	Broker BrokerStatus `json:"broker"`
	// Known brokers (the cluster's client URLs, as gossiped).
	Brokers []string      `json:"brokers,omitempty"`
	Bucket  BucketStatus  `json:"bucket"`
	Replica *ReplicaStats `json:"replica,omitempty"`
	// ReadOnly is set while JetStream has lost its quorum; the server then
	// leaves Bucket and Streams empty rather than wait on storage.
	ReadOnly bool `json:"read_only,omitempty"`
	// Streams are the streams behind every bucket ftfs uses.
	Streams []StreamStatus `json:"streams,omitempty"`
	// Warnings are what the operator should act on, such as a bucket
	// with fewer replicas than the server's --replicas.
	Warnings []string `json:"warnings,omitempty"`
}

// BrokerStatus names a broker.
type BrokerStatus struct {
	Name    string `json:"name"`
	URL     string `json:"url"`
	Cluster string `json:"cluster,omitempty"`
}

// BucketStatus describes the files bucket's stream.
type BucketStatus struct {
	Name     string       `json:"name"`
	Files    int          `json:"files"`
	Bytes    uint64       `json:"bytes"`
	Replicas int          `json:"replicas"`
	Leader   string       `json:"leader,omitempty"`
	Peers    []PeerStatus `json:"peers,omitempty"`
	Storage  string       `json:"storage"`
	Uploads  int          `json:"uploads"`
}

// PeerStatus is one replica of a stream.
type PeerStatus struct {
	Name    string        `json:"name"`
	Current bool          `json:"current"`
	Lag     uint64        `json:"lag,omitempty"`
	Active  time.Duration `json:"active,omitempty"`
	// Offline: the stream leader has lost touch with this replica's broker.
	Offline bool `json:"offline,omitempty"`
}

// ReplicaStats is what a backup reports of its plain-file replica.
type ReplicaStats struct {
	Dir    string    `json:"dir"`
	Files  int       `json:"files"`
	Bytes  int64     `json:"bytes"`
	Synced time.Time `json:"synced"`
}

// StreamStatus is the JetStream stream behind one bucket: its leader and
// how far each replica is behind. Error, when set, says why the stream
// could not be read; the other fields are then empty.
type StreamStatus struct {
	Bucket   string       `json:"bucket"`
	Stream   string       `json:"stream"`
	Messages uint64       `json:"messages"`
	Bytes    uint64       `json:"bytes"`
	Replicas int          `json:"replicas"`
	Leader   string       `json:"leader,omitempty"`
	Peers    []PeerStatus `json:"peers,omitempty"`
	Error    string       `json:"error,omitempty"`
}

// BrokerReport is one broker's answer on BrokerInfo, built from its
// embedded server.
type BrokerReport struct {
	Name        string    `json:"name"`
	URL         string    `json:"url"`
	Cluster     string    `json:"cluster,omitempty"`
	Version     string    `json:"version"`
	Started     time.Time `json:"started"`
	Connections int       `json:"connections"`
	// JetStream is false on a broker that runs without it.
	JetStream bool `json:"jetstream"`
	// MetaLeader is the broker this one sees leading the JetStream meta
	// group: "" while the group has no quorum, the broker itself when it
	// runs alone.
	MetaLeader string `json:"meta_leader,omitempty"`
	// MetaPeers are the other members of the meta group, as this broker
	// sees them. Only the leader tracks its followers, so only the
	// leader's Current is worth reading.
	MetaPeers []MetaPeer `json:"meta_peers,omitempty"`
	// MetaSize is the number of brokers in the meta group, QuorumNeeded
	// how many of them must be up for it to elect a leader.
	MetaSize     int `json:"meta_size,omitempty"`
	QuorumNeeded int `json:"quorum_needed,omitempty"`
	// Error says why the JetStream part is missing.
	Error string `json:"error,omitempty"`
}

// MetaPeer is one member of the JetStream meta group.
type MetaPeer struct {
	Name    string `json:"name"`
	Current bool   `json:"current"`
	Offline bool   `json:"offline,omitempty"`
}

// AccessSetRequest gives the folder Prefix ("" for the root, otherwise
// ending in "/") the rule Lines (ParseAccessRule), in place of the rule it
// had or inherited.
type AccessSetRequest struct {
	Prefix string   `json:"prefix,omitempty"`
	Lines  []string `json:"lines"`
}

// Validate: the prefix is a folder and the rule parses.
func (r AccessSetRequest) Validate() error {
	if err := ValidAccessPrefix(r.Prefix); err != nil {
		return err
	}
	_, err := ParseAccessRule(r.Lines)
	return err
}

// AccessPrefixRequest names a folder: the rule to remove (AccessRemove),
// so that the folder inherits its parent's again.
type AccessPrefixRequest struct {
	Prefix string `json:"prefix,omitempty"`
}

// Validate: the prefix is a folder ("" is the root).
func (r AccessPrefixRequest) Validate() error { return ValidAccessPrefix(r.Prefix) }

// AccessShowRequest asks which rule governs Path (a file name, or a
// folder ending in "/"; "" for the root) and what the caller may do there.
type AccessShowRequest struct {
	Path string `json:"path,omitempty"`
}

// Validate: the path is a file name or a folder.
func (r AccessShowRequest) Validate() error {
	if r.Path == "" || r.Path[len(r.Path)-1] == '/' {
		return ValidAccessPrefix(r.Path)
	}
	return ValidName(r.Path)
}

// AccessRule is one folder's rule. Builtin marks a rule no one stored:
// the root's, HomeRoot's and each home folder's defaults.
type AccessRule struct {
	Prefix  string    `json:"prefix"`
	Lines   []string  `json:"lines"`
	Builtin bool      `json:"builtin,omitempty"`
	Updated time.Time `json:"updated,omitzero"`
	By      string    `json:"by,omitempty"`
}

// AccessShowReply is the rule governing a path, from the folder
// Rule.Prefix, and the rights the caller has there (in AccessRights'
// order). SiteAdmin says the caller is an admin, whom no rule binds.
type AccessShowReply struct {
	Path      string     `json:"path"`
	Rule      AccessRule `json:"rule"`
	Rights    []string   `json:"rights"`
	SiteAdmin bool       `json:"site_admin,omitempty"`
}

// AccessListReply lists the stored rules the caller may see, by prefix.
type AccessListReply struct {
	Rules []AccessRule `json:"rules"`
}

// GroupRequest adds Users to Group (GroupAdd, which creates it), or
// removes them from it (GroupRemove; no users removes the group).
type GroupRequest struct {
	Group string   `json:"group"`
	Users []string `json:"users,omitempty"`
}

// Validate: the group's name is valid, and so is every user's.
func (r GroupRequest) Validate() error {
	if err := require("group", r.Group); err != nil {
		return err
	}
	if err := ValidGroup(r.Group); err != nil {
		return err
	}
	if len(r.Users) > MaxGroupUsers {
		return Rejectf(CodeInvalid, ReasonOutOfRange, "malformed request: %d users; a group holds at most %d", len(r.Users), MaxGroupUsers)
	}
	for _, u := range r.Users {
		if err := ValidUser(u); err != nil {
			return err
		}
	}
	return nil
}

// GroupListRequest asks for one group, or every group the caller may see
// when Group is empty.
type GroupListRequest struct {
	Group string `json:"group,omitempty"`
}

// Validate: a group named is a valid name.
func (r GroupListRequest) Validate() error {
	if r.Group == "" {
		return nil
	}
	return ValidGroup(r.Group)
}

// GroupInfo is a group and its users, sorted.
type GroupInfo struct {
	Name  string   `json:"name"`
	Users []string `json:"users"`
}

// GroupListReply lists groups by name.
type GroupListReply struct {
	Groups []GroupInfo `json:"groups"`
}
