-- `dbops audit show RUN`: one stored run, whole. Runs are named by their uuid `run_id`
-- (0007), resolved from a prefix by dbops_resolve_ids (kind 'audit_run', 0014); saving and
-- listing them with it: dbops_audit_run_save / dbops_audit_run_history (0017).

-- One stored run, whole, for `dbops audit show`: the run with this run_id, or the newest
-- run when p_run_id is null (`latest`). `previous` is the run that was "the previous run"
-- when it was made (the newest earlier run with the same selection, as audit.previous
-- finds it), as jsonb {id, run_id, generated_at, score, verdict, checks}, or null.
-- Unknown run -> P0002 (exit 4).
create or replace function dbops_audit_run(p_run_id uuid default null)
returns table (
    id bigint, run_id uuid, generated_at timestamptz, score int, verdict text, checks jsonb,
    duration_ms double precision, selection jsonb, operator text, previous jsonb
)
language plpgsql stable as $$
#variable_conflict use_column
declare
    found_row dbops_audit_runs%rowtype;
begin
    if p_run_id is null then
        select * into found_row from dbops_audit_runs r
         order by r.generated_at desc, r.id desc limit 1;
        if not found then
            raise exception 'not found: no stored audit runs (run `dbops audit`)'
                using errcode = 'P0002';
        end if;
    else
        select * into found_row from dbops_audit_runs r where r.run_id = p_run_id;
        if not found then
            raise exception 'not found: no audit run %', p_run_id using errcode = 'P0002';
        end if;
    end if;
    return query
    select found_row.id, found_row.run_id, found_row.generated_at, found_row.score,
           found_row.verdict, found_row.checks, found_row.duration_ms, found_row.selection,
           found_row.operator,
           (select jsonb_build_object('id', p.id, 'run_id', p.run_id,
                                      'generated_at', p.generated_at, 'score', p.score,
                                      'verdict', p.verdict, 'checks', p.checks)
              from dbops_audit_runs p
             where p.selection = found_row.selection
               and (p.generated_at, p.id) < (found_row.generated_at, found_row.id)
             order by p.generated_at desc, p.id desc
             limit 1);
end;
$$;
