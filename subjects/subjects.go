// Package subjects is the ftfs wire contract: every subject, header, message
// type and error code that crosses NATS between the file servers and their
// clients. Nothing else in ftfs spells a subject string.
//
// The protocol in one screen:
//
//	connect     user+password or session token; the broker asks the file
//	            servers (auth callout on AuthCallout), places the connection
//	            in UsersAccount and gives it the user's permissions: publish
//	            to its own request subjects (For), subscribe to Inbox(user)
//	            and ServerGone (a file server's connection closed: send the
//	            requests in flight again). Storage is in Account, which no
//	            subject or reply subject a user names can reach (auth.go).
//	subjects    every request subject below is Prefix.<user>.<name>: For
//	            fills the user in, and servers answer only into the inbox of
//	            the user the subject names (OwnInbox), or not at all.
//	login       Login          LoginRequest      -> SessionInfo; after
//	            repeated failures for the name, CodeThrottled (wait)
//	logout      Logout         (session)         -> Empty
//	whoami      WhoAmI         (session)         -> SessionInfo (no token)
//	list        List           ListRequest       -> ListReply (paged)
//	stat        Stat           NameRequest       -> FileInfo
//	watch       Watch          WatchRequest      -> WatchReply: a long poll
//	            for the changes after a stream sequence (any server; held
//	            up to MaxWatchWait with keepalives); CodeWatchBehind when
//	            the deletes after it are no longer kept: list again
//	delete      Delete         NameRequest       -> Empty
//	rename      Rename         RenameRequest     -> FileInfo
//	put         Put            PutRequest in HeaderPut, the whole content
//	            as the body (at most MaxPutSize bytes) -> FileInfo: a small
//	            file in one request, no upload to open or commit
//	upload      UploadOpen     UploadOpenRequest -> UploadState
//	            Chunk(inst)    raw bytes, headers Upload+Chunk -> ChunkAck
//	            or, opened Direct: JetStream publishes of the chunks on a
//	            connection of the upload's own (DirectUpload, UploadToken),
//	            in UploadsAccount, to UploadChunks; the brokers cut it when
//	            the upload ends (UploadEnded) or overruns (UploadOverrun)
//	            UploadResume   UploadRequest     -> UploadState (any server)
//	            UploadCommit   UploadCommitRequest -> FileInfo (any server;
//	            sent first to UploadCommitAt(inst), the holder's own)
//	            UploadAbort    UploadRequest     -> Empty
//	get         Get            NameRequest       -> FileInfo in HeaderFile,
//	            and as the body the content of a file of at most ChunkSize
//	            bytes; a larger one is then downloaded
//	download    Download       DownloadRequest   -> a stream of chunk
//	            messages (header HeaderStreamSeq), then an end-of-batch message
//	            (status header 204); any server, stateless.
//	status      Status         (session)         -> StatusReply
//	            Stats          (session)         -> micro Stats, one from
//	            every file server (no queue group)
//	brokers     BrokerInfo     (no session)      -> BrokerReport, one from
//	            every broker (the broker answers, not a file server)
//	admin       UserAdd, UserRemove, UserPassword, UserList (admin only)
//	            UserRevoke  UserRequest (name only) -> Empty: ends every
//	            session of the user at once (admin only)
//	access      AccessSet     AccessSetRequest    -> AccessRule (the rule's
//	            admins, or an admin); AccessRemove AccessPrefixRequest ->
//	            Empty (the folder inherits again); AccessShow
//	            AccessShowRequest -> AccessShowReply (the governing rule and
//	            the caller's rights); AccessList (session) -> AccessListReply
//	            (the stored rules the caller may see)
//	groups      GroupAdd, GroupRemove GroupRequest -> GroupInfo / Empty
//	            (admin only); GroupList GroupListRequest -> GroupListReply
//	            (an admin sees every group, a user those they are in)
//	rules       every file request is checked against the access rule of
//	            the file's folder (access.go) on the server that answers,
//	            replica reads included: List shows only names the user may
//	            list; Stat needs read or list, Get and Download read, a new
//	            name write, another's file delete. A refused name answers
//	            CodeForbidden whether or not it exists.
//	read-only   when JetStream has lost its quorum, every write fails with
//	            CodeReadOnly, and so do List, Stat and Download on a server
//	            without a replica: the client asks them again on
//	            ReplicaList, ReplicaStat, ReplicaDownload, which a backup
//	            answers from its replica dir (chunks carry HeaderOffset).
//	            Every answer from a replica carries a ReplicaLag (in
//	            ListReply, and in FileInfo.Replica): how far behind storage
//	            it is; files it has not yet copied are listed Pending.
//
// Every request but Login carries the session token in HeaderSession, which
// must be the session of the user the subject names, and must be sent from
// that user's own inbox (Inbox). Mutating requests
// may carry HeaderRequestID so that a retry after a lost reply is answered with
// the first outcome instead of being applied twice.
//
// Errors come back as nats micro errors: header "Nats-Service-Error-Code"
// holds a Code, "Nats-Service-Error" a human sentence, and for some codes
// HeaderErrorReason the exact rule broken (a Reason, such as
// ReasonNameDotSegment).
package subjects

import (
	"strings"
	"time"
)

// Service identity, as shown by `nats micro ls`.
const (
	ServiceName = "ftfs"
	// QueueGroup load-balances the shared endpoints over every file server.
	QueueGroup = "ftfs"
	// Prefix is the root of every request subject; the version is part of it
	// so that a v2 protocol can run beside v1.
	Prefix = "ftfs.v1"
)

// AnyUser is the user token of a request subject as the file servers
// subscribe to it: every request subject is Prefix, the requesting user's
// name, and the request's name ("ftfs.v1.alice.list"). A user connection
// may publish only below its own name (UserPublish), so the subject is the
// broker's word on who sent it; For fills the name in.
const AnyUser = "*"

// For is subject, one of the request subjects below, as user sends it.
func For(user, subject string) string {
	if rest, ok := strings.CutPrefix(subject, Prefix+"."+AnyUser+"."); ok {
		return Prefix + "." + user + "." + rest
	}
	return subject
}

// UserOf is the user named by a request subject ("" for any other).
func UserOf(subject string) string {
	rest, ok := strings.CutPrefix(subject, Prefix+".")
	if !ok {
		return ""
	}
	user, _, ok := strings.Cut(rest, ".")
	if !ok || user == AnyUser {
		return ""
	}
	return user
}

// userPrefix starts every request subject as the servers subscribe to it.
const userPrefix = Prefix + "." + AnyUser

// Shared request subjects: any live file server may answer.
const (
	Login        = userPrefix + ".login"
	Logout       = userPrefix + ".logout"
	WhoAmI       = userPrefix + ".whoami"
	List         = userPrefix + ".list"
	Stat         = userPrefix + ".stat"
	Delete       = userPrefix + ".delete"
	Rename       = userPrefix + ".rename"
	Put          = userPrefix + ".put"
	UploadOpen   = userPrefix + ".upload.open"
	UploadResume = userPrefix + ".upload.resume"
	UploadCommit = userPrefix + ".upload.commit"
	UploadAbort  = userPrefix + ".upload.abort"
	Download     = userPrefix + ".download"
	Get          = userPrefix + ".get"
	Status       = userPrefix + ".status"
	UserAdd      = userPrefix + ".user.add"
	UserRemove   = userPrefix + ".user.rm"
	UserPassword = userPrefix + ".user.passwd"
	UserList     = userPrefix + ".user.ls"
	UserRevoke   = userPrefix + ".user.revoke"
	// Access rules and groups (access.go).
	AccessSet    = userPrefix + ".access.set"
	AccessRemove = userPrefix + ".access.rm"
	AccessShow   = userPrefix + ".access.show"
	AccessList   = userPrefix + ".access.ls"
	GroupAdd     = userPrefix + ".group.add"
	GroupRemove  = userPrefix + ".group.rm"
	GroupList    = userPrefix + ".group.ls"
	// Stats is answered by every file server (no queue group), each with
	// its own micro statistics: what `ftfs status` lists per instance.
	// Users may not ask micro discovery ($SRV.>) itself, which answers
	// any reply subject.
	Stats = userPrefix + ".stats"
)

// Replica read subjects: answered only by backups, from their replica dir,
// whatever the state of JetStream. Clients use them for reads after a
// CodeReadOnly reply.
const (
	ReplicaList     = userPrefix + ".replica.list"
	ReplicaStat     = userPrefix + ".replica.stat"
	ReplicaDownload = userPrefix + ".replica.download"
)

// ChunkPrefix is the root of the per-instance chunk subjects.
const ChunkPrefix = userPrefix + ".chunk"

// Chunk is the subject on which one file server instance takes the chunks of
// the uploads it holds. Chunks of one upload must reach one server, in order,
// because that server chains them into the object store; when it dies the
// client asks UploadResume and continues on the instance named in the reply.
func Chunk(instance string) string { return ChunkPrefix + "." + instance }

// UploadCommitAt is the subject on which one instance takes the commits of
// the uploads it holds. A commit sent to UploadCommit reaches any server,
// and one that does not hold the upload must take it over first (fence,
// walk, claim: a dozen storage calls); so a client asks the holder here
// first, and UploadCommit when the holder does not answer.
func UploadCommitAt(instance string) string { return UploadCommit + "." + instance }

// UploadRelease is where the file server holding an upload listens for
// another one taking it over (to resume, commit or abort it), which asks
// it to let go and waits for the answer: a holder left alone would go on
// storing the chunks that reach it, even after a commit, until its next
// checkpoint found the upload taken. Outside Prefix: no user may publish.
func UploadRelease(upload string) string { return ControlPrefix + ".upload-release." + upload }

// ControlPrefix is the root of the subjects the file servers and brokers
// tell each other things on. No user may publish or subscribe below it.
const ControlPrefix = "ftfs.control.v1"

// UploadEnded is where a file server says that a direct upload was
// committed, aborted or dropped (the body is its ID): every broker cuts
// the upload's connections at once (UploadConnUser names them), and
// refuses none of the reconnects, which the auth callout refuses.
const UploadEnded = ControlPrefix + ".upload-ended"

// UploadOverrun is where a broker says that an upload connection has
// published more than its upload's size allows (UploadConnLimit; the body
// is the upload's ID): the broker has cut it, and a file server drops the
// upload and purges what it stored.
const UploadOverrun = ControlPrefix + ".upload-overrun"

// InstanceMark is subscribed to by a file server's storage connection, so
// that a broker can tell which instance it belongs to (the front
// connection holds the instance's micro subjects) and close both
// connections of a frozen server.
func InstanceMark(instance string) string { return ControlPrefix + ".instance." + instance }

// ServerGone is where a broker says that a file server's connection to it
// has closed (killed, stopped, or dropped as frozen). A client sends its
// requests in flight again at once: the requests the server held are lost
// with it. Outside Prefix, so that no user may publish a false notice.
const ServerGone = "ftfs.events.v1.server-gone"

// ServerGoneNotice is the body of a ServerGone message.
type ServerGoneNotice struct {
	// Connection is the file server's connection name (ConnNamePrimary,
	// ConnNameBackup), Broker the broker it was connected to.
	Connection string `json:"connection"`
	Broker     string `json:"broker"`
}

// TransferEvents is where the file servers tell each other that a user's
// download started, went on or ended (a JSON notice the fileserver package
// defines), so that each counts a user's transfers at once without asking
// the others. Outside Prefix: no user may publish or read it.
const TransferEvents = "ftfs.events.v1.transfers"

// DisconnectEvents is the system subject on which the brokers announce
// every closed connection of an account.
func DisconnectEvents(account string) string { return "$SYS.ACCOUNT." + account + ".DISCONNECT" }

// AuthCallout is where the broker asks the file servers to authorize a new
// connection (NATS auth callout; the file servers answer in QueueGroup).
const AuthCallout = "$SYS.REQ.USER.AUTH"

// AuthCalloutTimeout is how long a broker waits for a file server to
// answer its auth callout before it refuses the connection. A file server
// that cannot check the credentials (storage failing) leaves the callout
// unanswered; a client whose refusal took this long therefore knows that
// no file server decided, and tries again. In practice the broker's first
// PING (after its ping interval, 2 s) reaches a client still waiting for
// its CONNECT's answer first, and nats.go gives up on that ("expected
// PONG"): the same sign, sooner. So a callout's answer is worth little
// after two seconds.
const AuthCalloutTimeout = 5 * time.Second

// Micro discovery subjects, which only the service's own front
// connections may ask (users ask Stats).
const (
	DiscoveryPing  = "$SRV.PING." + ServiceName
	DiscoveryInfo  = "$SRV.INFO." + ServiceName
	DiscoveryStats = "$SRV.STATS." + ServiceName
)

// InboxRoot is the first token of every user inbox.
const InboxRoot = "_FTFS_INBOX"

// Inbox is the inbox prefix of a user: the only subjects a user connection
// may subscribe to are below it, so no user can read another user's replies.
// Clients pass it to nats.CustomInboxPrefix.
func Inbox(user string) string { return InboxRoot + "." + user }

// Headers.
const (
	// HeaderSession carries the session token on every request but Login.
	HeaderSession = "Ftfs-Session"
	// HeaderRequestID makes a mutating request idempotent across retries.
	HeaderRequestID = "Ftfs-Request-Id"
	// HeaderUpload names the upload a chunk belongs to.
	HeaderUpload = "Ftfs-Upload"
	// HeaderChunk is the 0-based index of a chunk within its upload.
	HeaderChunk = "Ftfs-Chunk"
	// HeaderPut carries a Put's PutRequest (JSON); the body is the content.
	HeaderPut = "Ftfs-Put"
	// HeaderFile carries the FileInfo (JSON) of a Get's reply; the body is
	// the content, for a file of at most ChunkSize bytes.
	HeaderFile = "Ftfs-File"
	// HeaderStreamSeq is copied by JetStream onto each downloaded chunk
	// ("Nats-Sequence"): the stream sequence a download resumes after.
	HeaderStreamSeq = "Nats-Sequence"
	// HeaderOffset is the byte offset of a chunk served from a replica
	// (ReplicaDownload), in place of HeaderStreamSeq.
	HeaderOffset = "Ftfs-Offset"
	// HeaderStatus is the NATS status header: "204" ends a download batch,
	// "404" means the batch found nothing, "503" means no responders, and
	// "100" is a file server's keepalive for a request it is working on.
	// The keepalive, every KeepaliveInterval to the request's reply subject
	// until the answer, is how a client tells a slow server from a dead
	// one: after a few intervals of silence it sends the request again,
	// with the same reply subject and request ID, to whichever server is
	// alive.
	HeaderStatus = "Status"
	// HeaderErrorCode and HeaderErrorText are the nats micro error headers.
	HeaderErrorCode = "Nats-Service-Error-Code"
	HeaderErrorText = "Nats-Service-Error"
	// HeaderErrorReason, on some errors, is their Reason.
	HeaderErrorReason = "Ftfs-Error-Reason"
)

// Transfer sizing. Every NATS message stays under 1 MiB.
const (
	// ChunkSize is the size of every chunk of a file but the last.
	ChunkSize = 512 << 10
	// UploadWindow is how many unacknowledged chunks a client may have in
	// flight to one server; the server refuses more.
	UploadWindow = 8
	// DownloadBatch is how many chunks one Download request returns. 32
	// (16 MiB) rather than 16: fewer batch requests per file, each costing
	// a round trip through a file server the ask-ahead does not fully hide
	// (a 1 GiB get went from 0.82–0.89 to 0.93–0.99 of the object store's
	// on a 2-core machine); 64 took the CLI past 100 MiB.
	DownloadBatch = 32
	// MaxPutSize bounds the content of a Put: one chunk. Larger files go
	// through an upload, which survives the loss of its server.
	MaxPutSize = ChunkSize
	// MaxNameLen bounds a file name in bytes.
	MaxNameLen = 1024
)

// Durations clients and servers agree on.
const (
	// KeepaliveInterval is how often a file server says it is still working
	// on a request (HeaderStatus "100").
	KeepaliveInterval = 250 * time.Millisecond
	// SessionTTL is how long a session lasts after login.
	SessionTTL = 24 * time.Hour
	// UploadIdle is how long an unfinished upload may go without a chunk
	// before any server aborts it and purges its chunks.
	UploadIdle = 15 * time.Minute
)

// Storage names: the JetStream buckets the file servers share.
const (
	FilesBucket    = "ftfs-files"
	UsersBucket    = "ftfs-users"
	SessionsBucket = "ftfs-sessions"
	UploadsBucket  = "ftfs-uploads"
	// RequestsBucket remembers the outcome of recent user-admin requests
	// by RequestID. A put, delete or rename needs no record: its meta
	// write carries the request ID as its JetStream message ID.
	RequestsBucket = "ftfs-requests"
	// LoginsBucket counts failed logins per user name (by digest), for the
	// login throttle all file servers share.
	LoginsBucket = "ftfs-logins"
	// AccessBucket holds the access rules and groups, in one key
	// (AccessKey) that every request reads.
	AccessBucket = "ftfs-access"
	AccessKey    = "rules"
)

// KVBuckets are the key-value buckets, every bucket but FilesBucket.
func KVBuckets() []string {
	return []string{UsersBucket, SessionsBucket, UploadsBucket, RequestsBucket, LoginsBucket, AccessBucket, SharesBucket}
}

// Object metadata keys on stored objects (ObjectInfo.Metadata).
const (
	MetaOwner = "ftfs-owner"
)

// Micro service metadata keys.
const (
	MetaRole     = "role"
	MetaInstance = "instance"
	MetaStarted  = "started"
)

// BrokerInfo is answered by every broker itself, not by the file servers:
// each replies with a BrokerReport on itself and its view of the JetStream
// meta group, so `ftfs status` sees brokers a file server is not connected
// to, and sees them while JetStream has no quorum. No queue group: gather
// replies for a moment. A broker answers only into the inbox of the user
// the subject names (OwnInbox), as the file servers do.
const BrokerInfo = userPrefix + ".broker.info"

// BrokerCensus is BrokerInfo for the file servers' front connections:
// every broker answers with its BrokerReport, into whatever reply the
// file server names (no user may publish below ControlPrefix). A file
// server counts the answers to tell a quorum loss from an election.
const BrokerCensus = ControlPrefix + ".broker-census"

// OwnInbox reports whether reply lies in the inbox of the user who sent a
// request on subject (UserOf): the only place a request may be answered,
// refusals included. A request whose reply fails it gets no answer at all.
func OwnInbox(subject, reply string) bool {
	user := UserOf(subject)
	return user != "" && strings.HasPrefix(reply, Inbox(user)+".") && IsInbox(reply)
}

// natsInboxRoot is nats.go's default inbox prefix, which service
// connections (file servers, tools) keep.
const natsInboxRoot = "_INBOX"

// IsInbox reports whether subject is a literal subject below a user's inbox
// (InboxRoot) or below nats.go's default inbox: somewhere only a waiting
// requester listens, and no service acts on what it receives.
func IsInbox(subject string) bool {
	var rest string
	switch {
	case strings.HasPrefix(subject, InboxRoot+"."):
		rest = subject[len(InboxRoot)+1:]
	case strings.HasPrefix(subject, natsInboxRoot+"."):
		rest = subject[len(natsInboxRoot)+1:]
	default:
		return false
	}
	for _, tok := range strings.Split(rest, ".") {
		if tok == "" || tok == "*" || tok == ">" || strings.ContainsAny(tok, " \t\r\n") {
			return false
		}
	}
	return true
}
