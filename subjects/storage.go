package subjects

import (
	"encoding/base64"
	"strconv"
)

// The JetStream object store's layout (nats.go jetstream/object.go), which
// the file servers write directly and the backup reads directly. Keeping it
// here makes it part of the contract: `nats object` must keep reading what
// ftfs writes.

// ObjectStream is the stream behind an object store bucket.
func ObjectStream(bucket string) string { return "OBJ_" + bucket }

// ObjectMeta is the subject of an object's meta message (its ObjectInfo,
// rolled up per subject).
func ObjectMeta(bucket, name string) string {
	return "$O." + bucket + ".M." + base64.URLEncoding.EncodeToString([]byte(name))
}

// ObjectChunks is the subject of an object version's chunks, in order.
func ObjectChunks(bucket, nuid string) string { return "$O." + bucket + ".C." + nuid }

// UploadFence is the i-th fence subject of upload id: the chunks of an
// upload are stored only while the fence each names is where its holder
// set it, so that a server that took the upload over keeps the one before
// out. Not a chunk: object store readers read ObjectChunks only.
func UploadFence(bucket, id string, i int) string {
	return ObjectChunks(bucket, id) + ".f" + strconv.Itoa(i)
}

// TombstonesPurged is the subject of the file servers' record of the
// highest stream sequence of a deleted name's meta (a tombstone) their
// storage sweep purged: a snapshot of a files index older than that may
// miss a delete. Below the chunk subjects, where object store readers
// never look, but its name can be no version's (a NUID has no '-').
func TombstonesPurged(bucket string) string { return ObjectChunks(bucket, "ftfs-tombstones-purged") }

// ObjectChunksAll matches the chunk and fence subjects of every version.
func ObjectChunksAll(bucket string) string { return "$O." + bucket + ".C.>" }

// StreamMsgGet is the subject of JetStream's message get on a stream,
// answered by the stream leader only.
func StreamMsgGet(stream string) string { return "$JS.API.STREAM.MSG.GET." + stream }

// StreamInfo is the subject of JetStream's stream info request. Unlike
// StreamMsgGet it is answered, besides the leader, by every replica that
// believes its stream leaderless, from its own state: a reader that must
// see every acknowledged write takes the answer naming a leader.
func StreamInfo(stream string) string { return "$JS.API.STREAM.INFO." + stream }

// DirectGet is the subject of JetStream direct gets on a stream.
func DirectGet(stream string) string { return "$JS.API.DIRECT.GET." + stream }

// ObjectMetas matches the meta subjects of every object in a bucket.
func ObjectMetas(bucket string) string { return "$O." + bucket + ".M.>" }

// StreamLeaderElected is the advisory JetStream publishes when a stream
// (or, with "*", any stream) has a new leader: storage calls waiting
// through the election can go again at once.
func StreamLeaderElected(stream string) string {
	return "$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED." + stream
}

// KVStream is the stream behind a key-value bucket, and KVSubjects the
// subjects it holds (nats.go jetstream/kv.go).
func KVStream(bucket string) string { return "KV_" + bucket }

// KVKey is the subject of one key of a key-value bucket.
func KVKey(bucket, key string) string { return "$KV." + bucket + "." + key }

// KVSubjects matches every key of a key-value bucket.
func KVSubjects(bucket string) string { return "$KV." + bucket + ".>" }
