# An application with no JWT code: Python's standard library through the agent.
import json, sys, urllib.request

with urllib.request.urlopen(sys.argv[1] + "/whoami", timeout=10) as resp:
    print(resp.status, json.load(resp)["appId"])
