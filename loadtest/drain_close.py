"""The end of the drain: 8 SIGTERM runs, each with 4 keep-alive clients on the Unix socket
(~120 req/s in all) for 1 s before the signal and through the 1 s drain delay. Counts
calls that got EOF/reset with no answer ("lost": the keep-alive close race), answers
that said Connection: close (every one during the drain), and connects refused once the
listener closed (the client's fallback). Bounded: 3 s of load per run.

    python3 loadtest/drain_close.py target/release/normd
"""
import http.client, socket, subprocess, sys, tempfile, threading, time, os, signal
BIN=sys.argv[1]
SCHEMAS=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "schemas")
class UConn(http.client.HTTPConnection):
    def __init__(s, path): super().__init__("localhost", timeout=5); s.path=path
    def connect(s):
        s.sock=socket.socket(socket.AF_UNIX); s.sock.settimeout(5); s.sock.connect(s.path)
def run():
    d=tempfile.mkdtemp(); sock=os.path.join(d,"n.sock")
    p=subprocess.Popen([BIN,"serve","--socket",sock,"--listen","","--schemas",SCHEMAS,"--drain-delay-ms","1000","--shutdown-timeout-ms","5000","--default-deadline-ms","1000"],stderr=subprocess.DEVNULL)
    for _ in range(100):
        if os.path.exists(sock): break
        time.sleep(0.05)
    time.sleep(0.3)
    stats={"ok":0,"lost":0,"refused":0,"closed_by_header":0}; lock=threading.Lock(); stop=time.time()+3.0
    def worker():
        c=None
        while time.time()<stop and p.poll() is None:
            try:
                if c is None: c=UConn(sock)
                c.request("POST","/norm?encoding=identity",body=b'{"b":1,"a":2}',headers={"Content-Type":"application/json"})
                r=c.getresponse(); r.read()
                with lock: stats["ok"]+=1
                if r.getheader("connection","").lower()=="close":
                    with lock: stats["closed_by_header"]+=1
                    c.close(); c=None
            except (ConnectionRefusedError, FileNotFoundError):
                with lock: stats["refused"]+=1
                c=None; time.sleep(0.02)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, http.client.BadStatusLine, socket.timeout, OSError):
                with lock: stats["lost"]+=1
                c=None
            time.sleep(0.02)
    ts=[threading.Thread(target=worker) for _ in range(4)]
    [t.start() for t in ts]; time.sleep(1.0); p.send_signal(signal.SIGTERM)
    [t.join() for t in ts]; p.wait(timeout=10)
    return stats, p.returncode
tot={"ok":0,"lost":0,"refused":0,"closed_by_header":0}
for i in range(8):
    s,rc=run(); print(i,s,"exit",rc,flush=True)
    for k in tot: tot[k]+=s[k]
print("TOTAL",tot)
