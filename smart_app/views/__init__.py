"""The app's views, one blueprint per job (registered in ``smart_app.web.create_app``):

* ``auth``    - ``/launch`` and ``/callback``: the SMART App Launch;
* ``report``  - ``/report``, ``/api/report`` and the EHR's style sheet;
* ``tasks``   - ``POST /task``: the Task write-back;
* ``sources`` - ``/source/<type>/<id>``: one resource as the FHIR server holds it;
* ``pages``   - the launch page, health check, JWKS and the app's CodeSystem.

``common`` (the user-facing error) and ``launched`` (the launched session: cookie, token refresh,
FHIR client, evaluation) are shared by them.
"""
