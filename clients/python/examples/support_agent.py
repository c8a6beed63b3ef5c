"""The product description's "Python (LangChain)" example, as written there, with
the two agent functions it calls defined as small stubs. The token comes from
ACT_TOKEN (the description shows a literal "act_1a2b3c4d5e6f..."); the sidecar
address from ACT_SIDECAR_GRPC_ADDR, else 127.0.0.1:8711 (where `npm start` runs it).

    ACT_TOKEN=act_... python3 examples/support_agent.py
"""

import os

from act_sdk import ACTClient


def fetch_customer_profile(customer_id):
    # Stub: a real agent would call the CRM here.
    return {"customer_id": customer_id, "name": "Ada Lovelace", "tier": "gold"}


def process_customer_data(customer_data):
    # Stub: a real agent would hand this to the LLM.
    print(f"processed {customer_data['customer_id']} ({customer_data['tier']})")


# Initialize ACT client
act = ACTClient(token=os.environ["ACT_TOKEN"])

# Check permission before agent action
if act.check_permission("read:customer_profile", resource="customer_123"):
    # Allowed - proceed with action
    customer_data = fetch_customer_profile("customer_123")
    process_customer_data(customer_data)
else:
    # Denied - handle gracefully
    raise PermissionError("Agent not authorized for this action")
