package subjects

import (
	"crypto/sha256"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nkeys"
)

// Broker accounts and identities. Three accounts keep what a user can name
// away from what the file servers store: nothing a user or an upload
// connection publishes, and no reply subject either may name, can reach a
// subject of Account, where JetStream lives. (NATS checks a publish's
// subject against the publisher's permissions but never its reply subject,
// so the account a connection lives in is the only fence around its
// replies.) The file servers and the brokers share one secret, the service
// password; from it both derive the key that signs user authorizations, so
// an operator configures a single secret.
const (
	// Account holds JetStream: the buckets, and the file servers' storage
	// connections (ServiceUser). No user connection is ever placed here.
	Account = "FTFS"
	// UsersAccount holds every user connection and the file servers' and
	// brokers' front connections (FrontUser), which answer the users. It
	// has no JetStream; its one import, DownloadImport, is below the
	// reserved reply prefix, where no reply can be aimed.
	UsersAccount = "FTFS_USERS"
	// UploadsAccount holds the direct upload connections and nothing else
	// but their one import, UploadChunks: a JetStream ack there can reach
	// only an upload connection's inbox.
	UploadsAccount = "FTFS_UPLOADS"
	// SystemAccount is the NATS system account (for `nats server report`).
	SystemAccount = "SYS"
	// ServiceUser is the file servers' storage identity in Account: the
	// JetStream API and the ftfs buckets, their own control and event
	// subjects (ServicePublish).
	ServiceUser = "ftfs-service"
	// FrontUser is the file servers' and brokers' identity in UsersAccount,
	// with the service password: it takes the users' requests and may
	// publish only into inboxes and its own control subjects
	// (FrontPublish).
	FrontUser = "ftfs-front"
	// SystemUser is the operator's identity in SystemAccount.
	SystemUser = "system"
	// OperatorUser is the operator's identity in Account, with the system
	// password: all of JetStream, for the NATS CLI and the bench (the
	// file servers' own identity may write ftfs's buckets only). Enabled
	// only when the brokers are given a system password.
	OperatorUser = "ftfs-operator"
	// BrokerEventsUser is each broker's own in-process identity in
	// SystemAccount, with a password made afresh at every start: it reads
	// the connection events that ServerGone is made from.
	BrokerEventsUser = "ftfs-broker-events"
)

// File servers connect with these connection names (nats.Name), by which
// the brokers tell their disconnection from a user's.
const (
	ConnNamePrimary = "ftfs-primary"
	ConnNameBackup  = "ftfs-backup"
)

// Environment variables; the development values live in .env, which goreman
// loads for the Procfile.
const (
	EnvServicePassword = "FTFS_SERVICE_PASSWORD"
	EnvSystemPassword  = "FTFS_SYSTEM_PASSWORD"
	EnvAdminPassword   = "FTFS_ADMIN_PASSWORD"
	EnvUserPassword    = "FTFS_PASSWORD"
	// EnvTLSCA names the CA file that signed the brokers' certificates,
	// for every process that connects to a broker (flag --tls-ca).
	EnvTLSCA = "FTFS_TLS_CA"
)

// IssuerKey derives the account key that signs auth callout responses from
// the service password. The broker configures its public key as the callout
// issuer; the file servers sign with it.
func IssuerKey(servicePassword string) (nkeys.KeyPair, error) {
	if servicePassword == "" {
		return nil, fmt.Errorf("no service password: set %s", EnvServicePassword)
	}
	seed := sha256.Sum256([]byte("ftfs auth callout issuer v1\x00" + servicePassword))
	kp, err := nkeys.FromRawSeed(nkeys.PrefixByteAccount, seed[:])
	if err != nil {
		return nil, fmt.Errorf("derive issuer key: %w", err)
	}
	return kp, nil
}

// UserPublish lists the only subjects a user connection may publish to:
// the file service's requests that name the user (For). The subject is
// thereby the broker's word on who asks, and a file server answers only
// into that user's inbox, even a request it refuses before looking at its
// session.
func UserPublish(user string) []string { return []string{Prefix + "." + user + ".>"} }

// UserSubscribe lists the only subjects a user connection may subscribe to:
// its own inbox, and the brokers' ServerGone notices.
func UserSubscribe(user string) []string {
	return []string{Inbox(user) + ".>", ServerGone}
}

// FrontPublish lists what a front connection (FrontUser) may publish: into
// inboxes (replies, keepalives), micro discovery among the service's own
// connections, downloads through DownloadImport, the brokers' ServerGone
// notices and the control subjects. No allow_responses: a reply subject a
// user named is published to only when it is an inbox.
func FrontPublish() []string {
	return []string{InboxRoot + ".>", natsInboxRoot + ".>", "$SRV.>", DownloadImport, ServerGone, ControlPrefix + ".>"}
}

// FrontSubscribe lists what a front connection may subscribe to: the
// requests, micro discovery, its own inbox and the control subjects.
func FrontSubscribe() []string {
	return []string{Prefix + ".>", "$SRV.>", natsInboxRoot + ".>", ControlPrefix + ".>"}
}

// ServicePublish lists what a storage connection (ServiceUser) may
// publish: the JetStream API and its flow control, the ftfs buckets, the
// file servers' own events and control subjects, and replies (to the
// brokers' auth callout requests, among them) through allow_responses.
func ServicePublish() []string {
	out := []string{"$JS.API.>", "$JS.FC.>", "$JS.ACK.>", "$O." + FilesBucket + ".>", TransferEvents, ControlPrefix + ".>", natsInboxRoot + ".>"}
	for _, b := range KVBuckets() {
		out = append(out, KVSubjects(b))
	}
	return out
}

// UploadTokenPrefix starts the token of an upload connection (Direct): a
// client that opened a direct upload connects a second time with
// UploadToken, and that connection may publish to the upload's chunk
// subject and nothing else.
const UploadTokenPrefix = "ftfs-upload."

// UploadToken is the connection token of a direct upload: its ID and the
// secret the server handed out with it.
func UploadToken(upload, secret string) string { return UploadTokenPrefix + upload + "." + secret }

// ParseUploadToken splits an upload connection's token; ok is false for any
// other token (a session's).
func ParseUploadToken(token string) (upload, secret string, ok bool) {
	rest, ok := strings.CutPrefix(token, UploadTokenPrefix)
	if !ok {
		return "", "", false
	}
	upload, secret, ok = strings.Cut(rest, ".")
	return upload, secret, ok && upload != "" && secret != ""
}

// UploadPublish lists the only subject an upload connection may publish to:
// its upload's chunk subject as UploadsAccount imports it (UploadChunks),
// where JetStream acknowledges each chunk to the connection's inbox.
func UploadPublish(upload string) []string { return []string{UploadChunks(upload)} }

// UploadSubscribe lists the only subjects an upload connection may
// subscribe to: its own inbox, UploadInbox.
func UploadSubscribe(user, upload string) []string { return []string{UploadInbox(user, upload) + ".>"} }

// UploadInbox is the inbox prefix of an upload connection: below its
// user's, and naming the upload, which nobody but its owner and the file
// servers knows while it is open.
func UploadInbox(user, upload string) string { return Inbox(user) + "." + upload }

// The imports that let the users' and the uploads' accounts reach
// JetStream in Account. Both are below NATS's reserved reply prefix "_R_.":
// a broker refuses any client publish whose reply subject lies there, so
// no reply, a file server's or JetStream's, can be aimed into an import
// and from there into storage.
const (
	// DownloadImport is JetStream's direct get on the files stream, for
	// the front connections: a download's chunks go from JetStream to the
	// user's inbox, and a reply subject outside UsersAccount cannot be
	// named.
	DownloadImport = "_R_.ftfs.download"
	// uploadChunksRoot is the root of UploadChunks.
	uploadChunksRoot = "_R_.ftfs.chunk"
)

// UploadChunks is the subject an upload connection publishes its chunks
// on; UploadsAccount imports it as ObjectChunks(FilesBucket, upload).
func UploadChunks(upload string) string { return uploadChunksRoot + "." + upload }

// UploadChunksAll matches every UploadChunks subject (the import).
const UploadChunksAll = uploadChunksRoot + ".*"

// UploadConnUser is the name the auth callout gives an upload connection:
// its owner, its upload and the most bytes it may publish. The brokers
// read it (ParseUploadConnUser) to cut the connection once the upload has
// ended or has carried more than its size.
func UploadConnUser(owner, upload string, limit int64) string {
	return "upload." + upload + "." + strconv.FormatInt(limit, 10) + "." + owner
}

// ParseUploadConnUser reads UploadConnUser; ok is false for any other name.
func ParseUploadConnUser(name string) (owner, upload string, limit int64, ok bool) {
	parts := strings.SplitN(name, ".", 4)
	if len(parts) != 4 || parts[0] != "upload" || parts[1] == "" || parts[3] == "" {
		return "", "", 0, false
	}
	limit, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || limit < 0 {
		return "", "", 0, false
	}
	return parts[3], parts[1], limit, true
}

// UploadConnLimit is how many bytes an upload connection may publish for
// an upload of size bytes before the brokers cut it: the size with every
// chunk's headers, and room for the chunks a client sends again after
// resumes (a quarter more, and two windows).
func UploadConnLimit(size int64) int64 {
	chunks := (size + ChunkSize - 1) / ChunkSize
	return size + size/4 + chunks*1024 + 2*UploadWindow*(ChunkSize+1024)
}
