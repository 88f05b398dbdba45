// Command mmclient drives a calls-offloader the way Mattermost's Calls plugin does, with a client
// written here from the standard library only: Basic auth on every call but /login and /version,
// JSON bodies from encoding/json (a trailing newline, no Content-Type), one success status per call
// (201 for /register, 200 elsewhere), 401 read as "unauthorized", any other answer's "error" field
// reported, /login's body read as a map of strings. It runs the plugin's ten calls, prints one line
// per call and "N of 10 calls failed", and exits 1 if any failed. The Rust test
// tests/tests/offloader_mattermost.rs builds and runs it against the real offloader.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

var errUnauthorized = errors.New("unauthorized")

// client holds one set of credentials, like the plugin's ClientConfig.
type client struct {
	base, id, key string
	http          *http.Client
}

// jobView is the part of a job the plugin reads, with its Go types.
type jobView struct {
	ID             string         `json:"id"`
	Type           string         `json:"type"`
	Runner         string         `json:"runner"`
	MaxDurationSec int64          `json:"max_duration_sec"`
	InputData      map[string]any `json:"input_data,omitempty"`
	StartAt        int64          `json:"start_at"`
	StopAt         int64          `json:"stop_at,omitempty"`
	OutputData     map[string]any `json:"output_data,omitempty"`
}

// jobRequest is the body of a job: field order and tags as the plugin's job config.
type jobRequest struct {
	Type           string         `json:"type"`
	MaxDurationSec int64          `json:"max_duration_sec"`
	Runner         string         `json:"runner"`
	InputData      map[string]any `json:"input_data,omitempty"`
}

// initRequest has no JSON tag on purpose: the plugin sends the Go field name.
type initRequest struct {
	Runners []string
}

func newClient(base, id, key string) *client {
	return &client{base: strings.TrimSuffix(base, "/"), id: id, key: key, http: &http.Client{Timeout: time.Minute}}
}

// call sends one request and returns the status and the whole body.
func (c *client) call(method, path string, body any, basic bool) (int, []byte, error) {
	var reader io.Reader
	if body != nil {
		var buf bytes.Buffer
		if err := json.NewEncoder(&buf).Encode(body); err != nil {
			return 0, nil, err
		}
		reader = &buf
	}
	req, err := http.NewRequest(method, c.base+path, reader)
	if err != nil {
		return 0, nil, err
	}
	if basic {
		req.SetBasicAuth(c.id, c.key)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// judge turns an answer into the plugin's view: nil on the one success status, errUnauthorized on
// 401, else the answer's "error" (decoded as strings only when strict, as for the client calls).
func judge(status, success int, body []byte, strict bool) error {
	switch status {
	case success:
		return nil
	case http.StatusUnauthorized:
		return errUnauthorized
	}
	var message string
	if strict {
		fields := map[string]string{}
		if err := json.Unmarshal(body, &fields); err != nil {
			return fmt.Errorf("decoding http response failed: %w", err)
		}
		message = fields["error"]
	} else {
		fields := map[string]any{}
		if err := json.Unmarshal(body, &fields); err != nil {
			return fmt.Errorf("decoding http response failed: %w", err)
		}
		message, _ = fields["error"].(string)
	}
	if message != "" {
		return fmt.Errorf("request failed: %s", message)
	}
	return fmt.Errorf("request failed with status %d", status)
}

func (c *client) register(id, key string) error {
	status, body, err := c.call("POST", "/register", map[string]string{"clientID": id, "authKey": key}, true)
	if err != nil {
		return err
	}
	return judge(status, http.StatusCreated, body, true)
}

func (c *client) unregister(id string) error {
	status, body, err := c.call("POST", "/unregister", map[string]string{"clientID": id}, true)
	if err != nil {
		return err
	}
	return judge(status, http.StatusOK, body, true)
}

// login returns the bearer token; the whole body must be a map of strings.
func (c *client) login(id, key string) (string, error) {
	status, body, err := c.call("POST", "/login", map[string]string{"clientID": id, "authKey": key}, false)
	if err != nil {
		return "", err
	}
	fields := map[string]string{}
	if err := json.Unmarshal(body, &fields); err != nil {
		return "", fmt.Errorf("decoding http response failed: %w", err)
	}
	if err := judge(status, http.StatusOK, body, true); err != nil {
		return "", err
	}
	return fields["bearerToken"], nil
}

func (c *client) initRunners(runners []string) error {
	status, body, err := c.call("POST", "/jobs/init", &initRequest{Runners: runners}, true)
	if err != nil {
		return err
	}
	return judge(status, http.StatusOK, body, false)
}

func (c *client) job(method, path string, body any) (jobView, error) {
	var view jobView
	status, data, err := c.call(method, path, body, true)
	if err != nil {
		return view, err
	}
	if err := judge(status, http.StatusOK, data, false); err != nil {
		return view, err
	}
	if err := json.Unmarshal(data, &view); err != nil {
		return view, fmt.Errorf("decoding http response failed: %w", err)
	}
	return view, nil
}

func (c *client) logs(id string) ([]byte, error) {
	status, data, err := c.call("GET", "/jobs/"+id+"/logs", nil, true)
	if err != nil {
		return nil, err
	}
	switch status {
	case http.StatusOK:
		return data, nil
	case http.StatusUnauthorized:
		return nil, errUnauthorized
	}
	return nil, fmt.Errorf("request failed with status %d", status)
}

type versionInfo struct {
	BuildDate    string `json:"buildDate"`
	BuildVersion string `json:"buildVersion"`
	BuildHash    string `json:"buildHash"`
	GoVersion    string `json:"goVersion"`
}

func (c *client) version() (versionInfo, error) {
	var info versionInfo
	status, data, err := c.call("GET", "/version", nil, false)
	if err != nil {
		return info, err
	}
	if err := json.Unmarshal(data, &info); err != nil {
		return info, fmt.Errorf("decoding http response failed: %w", err)
	}
	if status != http.StatusOK {
		return info, fmt.Errorf("request failed with status %d", status)
	}
	if info.BuildVersion == "" {
		return info, errors.New("empty buildVersion")
	}
	return info, nil
}

func main() {
	url := flag.String("url", "", "offloader with self-registration off")
	selfURL := flag.String("self-url", "", "offloader with self-registration on")
	admin := flag.String("admin", "", "the admin secret of both")
	runner := flag.String("runner", "", "a recording runner both allow")
	id := flag.String("id", "mmclient", "client id to register")
	flag.Parse()
	key := *id + "-key-0123456789abcdefghijklmnopqrstuvwxyz"

	failed, calls := 0, 0
	report := func(name string, err error) {
		calls++
		if err != nil {
			failed++
			fmt.Printf("FAIL %s: %v\n", name, err)
		} else {
			fmt.Printf("ok %s\n", name)
		}
	}

	adminClient := newClient(*url, "", *admin)
	_, err := adminClient.version()
	report("GetVersionInfo", err)
	report("Register (admin)", adminClient.register(*id, key))
	report("Register (self)", newClient(*selfURL, "", "").register(*id+"-self", key))

	plugin := newClient(*url, *id, key)
	token, err := plugin.login(*id, key)
	if err == nil && token == "" {
		err = errors.New("no bearerToken")
	}
	report("Login", err)
	report("Init", plugin.initRunners([]string{*runner}))
	created, err := plugin.job("POST", "/jobs", jobRequest{
		Type: "recording", MaxDurationSec: 3600, Runner: *runner,
		InputData: map[string]any{
			"site_url": "http://mattermost.example:8065", "call_id": strings.Repeat("c", 26),
			"post_id": strings.Repeat("p", 26), "recording_id": strings.Repeat("r", 26),
			"auth_token": strings.Repeat("a", 26), "width": 1280, "height": 720,
		},
	})
	if err == nil && (created.ID == "" || created.StartAt == 0 || created.StopAt != 0) {
		err = fmt.Errorf("unexpected new job %+v", created)
	}
	report("CreateJob", err)
	var view jobView
	deadline := time.Now().Add(90 * time.Second)
	for {
		view, err = plugin.job("GET", "/jobs/"+created.ID, nil)
		if err != nil || view.StopAt != 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if err == nil && view.StopAt == 0 {
		err = fmt.Errorf("job never stopped: %+v", view)
	}
	report("GetJob", err)
	logs, err := plugin.logs(created.ID)
	if err == nil && !bytes.Contains(logs, []byte("secret AUTH_TOKEN received")) {
		err = fmt.Errorf("AUTH_TOKEN did not reach the job: %q", logs)
	}
	report("GetJobLogs", err)
	report("Unregister (self)", plugin.unregister(*id))
	report("Unregister (admin)", newClient(*selfURL, "", *admin).unregister(*id+"-self"))

	fmt.Printf("%d of %d calls failed\n", failed, calls)
	if failed > 0 {
		os.Exit(1)
	}
}
