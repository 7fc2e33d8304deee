package client

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
)

var errReaderTooBig = errors.New("the reader gives more than the announced size")

// chunkReader reads the content of an upload chunk by chunk, into buffers
// of the upload's chunk size, and hashes it as it goes. The buffer of a
// chunk given back (reuse) is read into again, so an upload holds no more
// buffers than it keeps chunks in flight.
type chunkReader struct {
	r     io.Reader
	size  int   // of a chunk
	limit int64 // bytes r may give (the announced size); -1: any
	hash  hash.Hash
	read  int64    // bytes read so far
	eof   bool     // r is exhausted
	free  [][]byte // spare chunk buffers
}

func newChunkReader(r io.Reader, chunkSize int, limit int64) chunkReader {
	return chunkReader{r: r, size: chunkSize, limit: limit, hash: sha256.New()}
}

// next reads the next chunk: at most a chunk's size, less only at the end
// (eof is set). It returns nil when r ended with no byte more, and
// ErrIntegrity when r gives more than limit.
func (c *chunkReader) next() ([]byte, error) {
	var buf []byte
	if n := len(c.free); n > 0 {
		buf, c.free = c.free[n-1], c.free[:n-1]
	} else {
		buf = make([]byte, c.size)
	}
	n, err := io.ReadFull(c.r, buf[:c.size])
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		c.eof = true
	case err != nil:
		return nil, fmt.Errorf("read: %w", err)
	}
	if n == 0 {
		c.free = append(c.free, buf)
		return nil, nil
	}
	if c.limit >= 0 && c.read+int64(n) > c.limit {
		return nil, fmt.Errorf("%w: %w (%d bytes)", ErrIntegrity, errReaderTooBig, c.limit)
	}
	chunk := buf[:n]
	c.hash.Write(chunk)
	c.read += int64(n)
	return chunk, nil
}

// reuse gives back the buffer of a chunk that is no longer needed.
func (c *chunkReader) reuse(chunk []byte) {
	c.free = append(c.free, chunk[:cap(chunk)])
}
