-- An invitee sees the instance they are invited to (its name, in their list of invitations)
-- before they are a member; until now row-level security hid it, so on PostgreSQL the list of
-- invitations came back empty.
CREATE POLICY invitee_reads ON instances FOR SELECT
    USING (id IN (SELECT instance_id FROM invitations WHERE email = clawden_my_email()));
