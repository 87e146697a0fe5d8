package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// requestFunc appends the bytes of request number n to dst. It must be safe
// for concurrent use; n counts from zero over one load run.
type requestFunc func(dst []byte, n int64) []byte

// loadSpec is one closed-loop load run: conns keep-alive connections, each
// sending its next request as soon as the previous answer is read, until
// duration has passed or limit requests have been started (0 = no limit).
type loadSpec struct {
	addr     string
	conns    int
	duration time.Duration
	limit    int64
	request  requestFunc
	// rate, when positive, paces the load to about rate requests per
	// second in all (open loop per connection, each with its share)
	// instead of sending as fast as answers come back.
	rate float64
	// wantStatus is the status every answer must have.
	wantStatus int
}

// loadResult is what the load generator saw.
type loadResult struct {
	requests int64
	errors   int64
	firstErr error
	elapsed  time.Duration
	// latencies of the successful requests, sorted.
	latencies []time.Duration
}

func (r loadResult) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.requests) / r.elapsed.Seconds()
}

// percentile returns the p-th percentile (0 < p < 100) of the latencies.
func (r loadResult) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := int(float64(len(r.latencies))*p/100 + 0.5)
	i = min(max(i-1, 0), len(r.latencies)-1)
	return r.latencies[i]
}

// runLoad drives spec and returns the totals. A connection that fails is
// counted as an error and not replaced; the run goes on with the others.
// The caller reads process counters right before and after.
func runLoad(ctx context.Context, spec loadSpec) loadResult {
	var (
		next     atomic.Int64
		errs     atomic.Int64
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
		mu       sync.Mutex
		all      []time.Duration
	)
	fail := func(err error) {
		errs.Add(1)
		errOnce.Do(func() { firstErr = err })
	}
	ctx, cancel := context.WithTimeout(ctx, spec.duration)
	defer cancel()
	deadline, _ := ctx.Deadline()
	start := time.Now()
	for range spec.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 4096)
			defer func() {
				mu.Lock()
				all = append(all, lat...)
				mu.Unlock()
			}()
			conn, err := (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp", spec.addr)
			if err != nil {
				if ctx.Err() == nil {
					fail(fmt.Errorf("dial %s: %w", spec.addr, err))
				}
				return
			}
			defer conn.Close()
			// A request that outlives the run by a second is an error.
			_ = conn.SetDeadline(deadline.Add(time.Second))
			br := bufio.NewReaderSize(conn, 16<<10)
			var buf []byte
			var interval time.Duration
			due := time.Now()
			if spec.rate > 0 {
				interval = time.Duration(float64(spec.conns) / spec.rate * float64(time.Second))
				// Spread the connections' first requests over one interval.
				due = due.Add(time.Duration(rand.Int64N(int64(interval))))
			}
			for time.Now().Before(deadline) {
				if interval > 0 {
					if d := time.Until(due); d > 0 {
						time.Sleep(d)
					}
					due = due.Add(interval)
				}
				n := next.Add(1) - 1
				if spec.limit > 0 && n >= spec.limit {
					return
				}
				buf = spec.request(buf[:0], n)
				t0 := time.Now()
				if _, err := conn.Write(buf); err != nil {
					fail(fmt.Errorf("write: %w", err))
					return
				}
				status, err := readResponse(br)
				if err != nil {
					fail(fmt.Errorf("read answer: %w", err))
					return
				}
				if status != spec.wantStatus {
					fail(fmt.Errorf("status %d, want %d", status, spec.wantStatus))
					continue
				}
				lat = append(lat, time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(all)
	return loadResult{
		requests:  int64(len(all)),
		errors:    errs.Load(),
		firstErr:  firstErr,
		elapsed:   elapsed,
		latencies: all,
	}
}

var (
	errBadStatusLine = errors.New("malformed status line")
	errBadHeader     = errors.New("malformed header")
	errConnClose     = errors.New("server closed the connection (Connection: close)")
)

// readResponse reads one HTTP/1.1 response and discards its body; it
// returns the status code. It handles Content-Length and chunked bodies,
// which is all the servers of the suite send.
func readResponse(br *bufio.Reader) (int, error) {
	line, err := readLine(br)
	if err != nil {
		return 0, err
	}
	// "HTTP/1.1 200 OK"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, fmt.Errorf("%w: %q", errBadStatusLine, line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, fmt.Errorf("%w: %q", errBadStatusLine, line)
	}
	length, chunked, closing := int64(-1), false, false
	for {
		line, err := readLine(br)
		if err != nil {
			return 0, err
		}
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, fmt.Errorf("%w: %q", errBadHeader, line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, "Content-Length"):
			if length, err = strconv.ParseInt(string(value), 10, 64); err != nil || length < 0 {
				return 0, fmt.Errorf("%w: %q", errBadHeader, line)
			}
		case asciiEqualFold(name, "Transfer-Encoding"):
			chunked = asciiEqualFold(value, "chunked")
		case asciiEqualFold(name, "Connection"):
			closing = asciiEqualFold(value, "close")
		}
	}
	switch {
	case chunked:
		if err := discardChunked(br); err != nil {
			return 0, err
		}
	case length > 0:
		if _, err := br.Discard(int(length)); err != nil {
			return 0, err
		}
	case length < 0 && status >= 200 && status != 204 && status != 304:
		return 0, errors.New("answer without length")
	}
	if closing {
		return status, errConnClose
	}
	return status, nil
}

func discardChunked(br *bufio.Reader) error {
	for {
		line, err := readLine(br)
		if err != nil {
			return err
		}
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("%w: chunk size %q", errBadHeader, line)
		}
		if n == 0 {
			// Trailers, then the empty line.
			for {
				line, err := readLine(br)
				if err != nil {
					return err
				}
				if len(line) == 0 {
					return nil
				}
			}
		}
		if _, err := br.Discard(int(n) + 2); err != nil {
			return err
		}
	}
}

// readLine returns one line without its CRLF; the slice is valid until the
// next read.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return bytes.TrimRight(line, "\r\n"), nil
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c, d := b[i], s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// httpGet builds a GET request for path with the given headers, in the
// order given (name, value, name, value, ...).
func httpGet(dst []byte, host, path string, headers ...string) []byte {
	dst = append(dst, "GET "...)
	dst = append(dst, path...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, host...)
	dst = append(dst, "\r\n"...)
	for i := 0; i+1 < len(headers); i += 2 {
		dst = append(dst, headers[i]...)
		dst = append(dst, ": "...)
		dst = append(dst, headers[i+1]...)
		dst = append(dst, "\r\n"...)
	}
	return append(dst, "\r\n"...)
}
